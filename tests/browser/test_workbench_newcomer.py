"""What a newcomer meets in the workbench (issue 18, item 8), in Chromium on a tiny model: the analysis in
progress (old results dimmed, a spinner and the time so far) and the prompt's token count; a phone-width
screen (390 px) without sideways scrolling on any panel; plain-word errors; ablation changes in percentage
points, mean ablation's prediction table, head names and plurals; heatmap clicks that keep the page where it
is and Enter that keeps the keyboard focus; one job polled once however often its panel is drawn; and SAE
bar labels that keep the feature id."""

from __future__ import annotations

import re

import pytest

from tests.deadlines import STEP_S

from .conftest import Server
from .shown import PANELS, pct, shows

PROMPT = "the cat sat on the mat"
NARROW = 390
MINUS = "\u2212"


def held_routes(page, pattern: str) -> list:
    """Hold every request matching `pattern` until the test continues it (the page waits meanwhile)."""
    held: list = []
    page.page.route(pattern, lambda route: held.append(route))
    return held


def release(page, pattern: str, held: list) -> None:
    for route in held:
        route.continue_()
    page.page.unroute(pattern)


def until(page, condition, what: str) -> None:
    """Let the page run until `condition()` holds (a hang guard, not a timing)."""
    for _ in range(int(STEP_S / 0.05)):
        if condition():
            return
        page.page.wait_for_timeout(50)
    raise AssertionError(f"never happened: {what}")


def pp(d: float) -> str:
    """dom.js pp: a change of a probability in percentage points."""
    a = abs(100 * d)
    return f"{MINUS if d < 0 else '+'}{a:.{3 if 0 < a < 0.1 else 1}f} pp"


def test_analysis_in_progress_and_token_counter(page, tiny_server):
    n = tiny_server.post("tokens", {"prompt": PROMPT})["n_tokens"]
    page.page.fill("#prompt", PROMPT)
    page.wait_text("#prompt-count", f"{n} tokens")
    # Typing is counted once it pauses: twenty quick edits ask the server once, for the last text.
    before = len(page.requests)
    page.page.evaluate(
        """() => { const t = document.querySelector('#prompt');
                   for (let i = 1; i <= 20; i++) {
                     t.value = 'the cat '.repeat(i).trim();
                     t.dispatchEvent(new Event('input'));
                   } }"""
    )
    last = tiny_server.post("tokens", {"prompt": ("the cat " * 20).strip()})["n_tokens"]
    page.wait_text("#prompt-count", f"{last} tokens")
    assert [r for r in page.api_requests_since(before) if r == "POST tokens"] == ["POST tokens"]
    page.page.fill("#prompt", "the cat " * 600)  # over the server's 4000 characters: plain words, no field syntax
    page.wait_text("#prompt-count", "too long")
    counted = page.page.inner_text("#prompt-count")
    assert "4000 characters" in counted and "should" not in counted and "prompt:" not in counted
    page.errors.clear()  # the browser logs the refused request itself; the page showed it in plain words

    page.analyse(PROMPT)
    assert page.page.inner_text("#prompt-count") == f"{n} tokens"
    # The next analysis is held at the server's door: the old results dim at once and the time so far runs.
    held = held_routes(page, "**/api/overview")
    page.page.fill("#prompt", "the dog ran to the park")
    page.page.click("#analyse")
    page.page.wait_for_selector("#analyse-status:not([hidden])")
    until(page, lambda: held, "the overview request was made")
    for dimmed in ("#panel", "#tokens"):
        assert float(page.page.eval_on_selector(dimmed, "e => getComputedStyle(e).opacity")) < 0.6, dimmed
    status = page.page.inner_text("#analyse-status")
    assert re.fullmatch(r"Analysing\u2026 \d+\.\d s", status), status
    page.page.wait_for_function(  # the clock runs while the server works
        "t => document.querySelector('#analyse-status').innerText !== t", arg=status
    )
    # The spinner is drawn by CSS, not an emoji (a box without an emoji font).
    spinner = page.page.eval_on_selector(
        "#analyse-status", "e => { const s = getComputedStyle(e, '::before'); return [s.content, s.animationName]; }"
    )
    assert spinner[1] == "spin" and all(ord(c) < 128 for c in spinner[0]), spinner
    page.shot("analysing")
    release(page, "**/api/overview", held)
    page.page.wait_for_selector("body[data-analysis=done]")
    assert page.page.is_hidden("#analyse-status")
    assert page.page.eval_on_selector("#panel", "e => getComputedStyle(e).opacity") == "1"
    assert page.page.inner_text("#tokens .tok >> nth=2") == "dog"


def no_overflow(page, where: str) -> None:
    width, wide = page.page.evaluate(
        """() => { const W = document.documentElement.clientWidth;
                   return [document.documentElement.scrollWidth,
                           [...document.querySelectorAll('body *')].filter((e) => e.getClientRects().length
                              && e.getBoundingClientRect().right > W + 0.5 && !e.closest('.heatmap-wrap'))
                              .slice(0, 5).map((e) => `${e.tagName} ${e.id} ${e.getAttribute('class') || ''}`)]; }"""
    )
    assert width <= NARROW, (where, width, wide)


def test_phone_width_ablation_and_plain_errors(page, tiny_server):
    """At 390 px, every panel and every result of the interventions fits the width; ablation results speak in
    percentage points with one head name format, mean ablation shows its table, and errors are plain."""
    page.page.set_viewport_size({"width": NARROW, "height": 800})
    no_overflow(page, "start")
    page.analyse(PROMPT)
    for panel in PANELS:
        page.open_panel(panel)
        page.page.wait_for_function("!document.querySelector('#panel .loading')")
        no_overflow(page, panel)
    n = len(tiny_server.post("tokens", {"prompt": PROMPT})["tokens"])

    page.open_panel("ablation")
    page.click_cell("#panel canvas.heatmap", 0, 1)
    page.wait_text("#ablate-marked", "L0H1")
    page.page.click("text=Ablate selected heads")
    page.page.wait_for_selector("#panel .ablation-result")
    body = {"prompt": PROMPT, "heads": [[0, 1]], "position": n - 1, "how": "zero", "metric": "prob"}
    api = tiny_server.post("ablate", body)
    result = page.page.inner_text("#panel .ablation-result")
    assert shows(result, "(change {})", api["difference"], f=pp)
    assert "L0H1 zero-ablated" in result and "%)" not in result
    assert "percentage points" in page.page.get_attribute("#panel .ablation-change", "title")
    labels = page.page.locator("#panel .ablation-results svg g.bar text[text-anchor=end]").all_text_contents()
    assert labels == ["clean", "ablated (1 head)"], labels
    no_overflow(page, "zero ablation")

    page.page.select_option("#ablate-how", "mean")
    page.page.click("text=Ablate selected heads")
    page.wait_text("#panel .ablation-result", "mean-ablated")
    mean = tiny_server.post("ablate", {**body, "how": "mean"})
    table = page.page.inner_text("#panel table.compare")
    assert "clean vs ablated" in table
    for row in mean["predictions"]["ablated"]:
        assert shows(table, "{}", row["probability"], f=pct)
    page.page.click("text=Sweep every head")
    page.wait_text("#panel figcaption", "Change of the metric when each head alone is ablated")
    sweep = page.page.inner_text("#panel .ablation-results")
    assert " pp" in sweep and "percentage points" in page.page.inner_text("#panel .legend")
    no_overflow(page, "sweep")
    page.shot("ablation-390")

    page.open_panel("patching")
    page.page.fill("#patching-corrupted", PROMPT)  # the same prompt: both predict the same token
    page.page.click("text=Patch layers \u00d7 positions")
    error = page.page.locator("#panel p.error").inner_text()
    assert "Versus token" in error and "versus:" not in error and "give versus" not in error
    page.page.fill("#patching-corrupted", "the big dog sat on the mat")  # one token longer
    page.page.fill("#patching-target", " mat")
    page.page.fill("#patching-versus", " park")
    page.page.click("text=Patch layers \u00d7 positions")
    page.wait_text("#panel p.error", "same number of tokens")
    error = page.page.locator("#panel p.error").inner_text()
    assert "align" not in error and "=" not in error, error
    page.page.fill("#patching-corrupted", "the dog sat on the mat")
    page.page.click("text=Patch layers \u00d7 heads")
    page.page.wait_for_selector("#panel canvas.heatmap")
    no_overflow(page, "patching")

    page.open_panel("circuit")
    page.page.click("text=Find the circuit")
    page.page.wait_for_selector("#panel svg g.node")
    shown = page.page.text_content("#panel svg")  # node labels and every tooltip
    assert not re.search(r"L\d+\.H\d+", shown), shown
    no_overflow(page, "circuit")
    page.shot("circuit-390")

    page.open_panel("steering")
    page.page.fill("#steer-tokens", "500")
    page.page.click("#panel button:has-text('Steer')")
    page.wait_text("#panel p.error", "New tokens must be at most")
    assert "max_new_tokens" not in page.page.inner_text("#panel p.error")
    page.errors.clear()  # the refused request, logged by the browser itself
    page.page.fill("#steer-tokens", "3")
    page.page.click("#panel button:has-text('Steer')")
    page.page.wait_for_selector("#panel table.steer-table")
    no_overflow(page, "steering")
    page.shot("steering-390")


def test_heatmap_clicks_keep_the_page_and_the_focus(page):
    page.page.set_viewport_size({"width": 1320, "height": 500})
    page.analyse(PROMPT)
    page.page.wait_for_selector("body[data-prefetch=done]")
    page.open_panel("attention")
    pattern = page.page.locator("#panel canvas.heatmap").nth(1)
    pattern.scroll_into_view_if_needed()
    page.page.evaluate("window.scrollBy(0, 200)")
    y = page.page.evaluate("scrollY")
    assert page.page.eval_on_selector("#tokens", "e => e.getBoundingClientRect().bottom") < 0  # strip above view
    grid = pattern.evaluate("c => JSON.parse(c.dataset.grid)")
    box = pattern.bounding_box()
    page.page.mouse.click(box["x"] + grid["x"] + 0.5 * grid["w"], box["y"] + grid["y"] + 3.5 * grid["h"])
    page.page.wait_for_selector('#tokens .tok.selected[data-pos="3"]')
    assert page.page.evaluate("scrollY") == y  # the page stays where the click was

    # Marking heads with the keyboard: Enter marks, and the focus (and its cursor) stay on the grid.
    page.open_panel("ablation")
    page.page.focus("#panel canvas.heatmap")
    page.page.keyboard.press("ArrowRight")
    page.page.keyboard.press("Enter")
    page.wait_text("#ablate-marked", "L0H1")
    assert page.page.evaluate("document.activeElement.matches('#panel canvas.heatmap')")
    page.page.keyboard.press("ArrowDown")
    page.page.keyboard.press("Enter")
    page.wait_text("#ablate-marked", "L0H1, L1H1")
    assert page.page.evaluate("document.activeElement.matches('#panel canvas.heatmap')")


@pytest.fixture
def fresh_server(tmp_path):
    """A server of its own: the shared one may have head roles cached already (then no job runs)."""
    from tests.tiny import tiny_model

    server = Server(tiny_model("llama"), tmp_path / "experiments.sqlite")
    yield server
    server.stop()


def test_a_job_drawn_twice_is_run_and_polled_once(open_page, fresh_server):
    """Drawing a panel again while its job runs (a click on a token) joins the running job."""
    page = open_page(fresh_server)
    page.analyse(PROMPT)
    page.page.wait_for_selector("body[data-prefetch=done]")
    before = len(page.requests)
    held = held_routes(page, "**/api/jobs/*")  # its polls wait until released
    page.open_panel("roles")
    until(page, lambda: held, "the head-roles job was polled")
    for pos in (1, 2, 3):
        page.page.click(f'#tokens .tok[data-pos="{pos}"]')
        page.page.wait_for_selector(f'#tokens .tok.selected[data-pos="{pos}"]')
    asked = page.api_requests_since(before)
    assert asked.count("POST jobs") == 1, asked
    assert len(held) == 1
    page.wait_text("#panel .loading", "Scoring heads")  # the redrawn panel hears the running job's progress
    release(page, "**/api/jobs/*", held)
    page.page.wait_for_selector("#panel p.facts")
    assert page.page.locator("#panel canvas.heatmap").count() == 4
    polled = {r for r in page.api_requests_since(before) if r.startswith("GET jobs/")}
    assert len(polled) == 1, polled  # one job id
    assert not page.errors, page.errors


def test_bar_labels_keep_their_start(page):
    """Long bar labels (an SAE feature's id and its automatic label) are cut at the end, never at the start."""
    labels = [
        "F4321 fires on ' Paris', ' London', ' Rome', ' Berlin' and ' Madrid'",
        "F17 rare",
        "F905 fires on ' the', ' a'",
    ]
    drawn = page.page.evaluate(
        """async (labels) => {
             const { barsSVG } = await import('/static/js/svgcharts.js');
             const div = document.createElement('div');
             div.innerHTML = barsSVG({ title: 'features', labels, values: [3, 2, 1] });
             document.body.append(div);
             const out = [...div.querySelectorAll('g.bar text[text-anchor=end]')]
               .map((t) => [t.getBBox().x, t.textContent]);
             div.remove();
             return out;
           }""",
        labels,
    )
    for (x, text), label in zip(drawn, labels, strict=True):
        assert x >= 0, (x, text)
        assert text.startswith(label.split()[0] + " ")
