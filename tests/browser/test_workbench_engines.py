"""The workbench's core walkthrough in each browser engine: Chromium, Firefox and WebKit (Safari's engine).

On a tiny model: type a prompt, click a token, move with the keyboard, open the attention grid (its drawn
colours checked against matplotlib's viridis, a head clicked on the canvas, a token hovered), direct logit
attribution, the logit lens and an ablation, and every panel's notes; the values on screen are compared with
the API's answers for the same questions. How each engine is driven: tests/browser/engines.py.
"""

from __future__ import annotations

import pytest

from . import engines
from .shown import PANELS, pct, show_token, shows

PROMPT = "the cat sat on the mat"


@pytest.fixture(params=["chromium", "firefox", "webkit"])
def browser(request) -> engines.Driver:
    reason = engines.missing(request.param)
    if reason:
        pytest.skip(f"{request.param}: {reason}; bash scripts/setup.sh --test installs it")
    if request.param == "chromium":
        driver = engines.ChromiumDriver(request.getfixturevalue("chromium"))
    elif request.param == "firefox":
        driver = engines.FirefoxDriver()
    else:
        driver = engines.WebKitDriver()
    yield driver
    try:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            driver.shot("failure")
    finally:
        driver.close()


def open_panel(b: engines.Driver, panel: str) -> str:
    b.click(f"#tab-{panel}")
    b.wait_for(f"#panel[data-panel={panel}] h2")
    return b.text("#panel")


def grid_colours(b: engines.Driver, canvas: str) -> list[list[list[int]]]:
    """The colour drawn inside each cell of a heatmap canvas (a point clear of grid lines, marks and text)."""
    return b.js(
        """const c = document.querySelector(arguments[0]);
           const g = JSON.parse(c.dataset.grid);
           const k = c.width / parseFloat(c.style.width);  // canvas pixels per CSS pixel
           const ctx = c.getContext('2d');
           return Array.from({length: g.rows}, (_, i) => Array.from({length: g.cols}, (_, j) => {
             const at = (start, cell, n) => Math.floor((start + n * cell + 4) * k);
             const d = ctx.getImageData(at(g.x, g.w, j), at(g.y, g.h, i), 1, 1).data;
             return [d[0], d[1], d[2]];
           }));""",
        canvas,
    )


def test_core_walkthrough(browser, tiny_server):
    from matplotlib import colormaps

    b = browser
    b.open(tiny_server.url + "/")
    b.wait("document.body.dataset.ready === 'true'", "the page to load the model's description")
    assert b.text("#model-name") == "tiny-llama"

    # A prompt: the token strip shows the tokens the API gives, the last one selected.
    b.fill("#prompt", PROMPT)
    b.click("#analyse")
    b.wait("document.body.dataset.analysis === 'done'", "the first analysis")
    tokens = tiny_server.post("tokens", {"prompt": PROMPT})["tokens"]
    assert b.texts("#tokens .tok") == [show_token(t["token"]) for t in tokens]
    assert b.attr("#tokens .tok.selected", "data-pos") == str(len(tokens) - 1)

    # Click a token: the predictions after it, as the API gives them, in the facts line and the bar chart.
    b.click('#tokens .tok[data-pos="3"]')
    b.wait_text("#panel .facts", "After token 3")
    predicted = tiny_server.post("predict", {"prompt": PROMPT, "k": 10, "position": 3})
    facts = b.text("#panel .facts")
    assert shows(facts, "entropy {} nats", predicted["entropy_nats"])
    assert shows(facts, "{}", predicted["top"][0]["probability"], f=pct)
    bars = b.js("return document.querySelector('#panel svg').textContent")
    for t in predicted["top"][:5]:
        assert shows(bars, "{}", t["probability"], f=pct)
    b.shot("predictions")

    # The keyboard moves the selection.
    b.press("#tokens", "ArrowLeft")
    b.wait_text("#panel .facts", "After token 2")
    assert b.attr("#tokens .tok.selected", "data-pos") == "2"

    # Attention: the head grid is drawn in the right colours; a click on a cell selects that head.
    text = open_panel(b, "attention")
    assert "What you see." in text and "What it does not prove." in text
    b.wait_for("#panel canvas.heatmap")
    summaries = tiny_server.post("overview", {"prompt": PROMPT, "k": 10, "position": -1})["attention"]["summaries"]
    focus = {(s["layer"], s["head"]): s["row_max"] for s in summaries}
    lo, hi = min(focus.values()), max(focus.values())
    drawn = grid_colours(b, "#panel canvas.heatmap")
    viridis = colormaps["viridis"]
    for (layer, head), value in focus.items():
        expected = [round(255 * c) for c in viridis((value - lo) / (hi - lo))[:3]]
        assert max(abs(x - y) for x, y in zip(drawn[layer][head], expected, strict=True)) <= 8, (layer, head)
    b.click_cell("#panel canvas.heatmap", 2, 1)
    b.wait_text("#panel figcaption", "L2H1: how much each token")
    b.wait_text("#panel table.reads caption", "What token 2 reads in each head of layer 2")
    api = tiny_server.post("attention", {"prompt": PROMPT, "layer": 2, "head": 1, "query_position": 2, "top_k": 5})
    top = next(r for r in api["reads"] if r["layer"] == 2 and r["head"] == 1)["keys"][0]
    assert shows(b.text("#panel table.reads"), f"{top['position']} {show_token(top['token'])}: {{}}", top["weight"])
    # Hovering a token colours the strip by what it reads in the selected head.
    b.hover('#tokens .tok[data-pos="4"]')
    b.wait_text("#strip-note", "what token 4 reads in L2H1")
    assert "background" in (b.attr('#tokens .tok[data-pos="0"]', "style") or "")
    assert b.js("return document.querySelector('.tip')?.hidden ?? true"), "the grid's tooltip outlived the pointer"
    b.shot("attention")

    # Direct logit attribution at the selected token.
    open_panel(b, "dla")
    b.wait_text("#panel .facts", "model's logit")
    dla = tiny_server.post("dla", {"prompt": PROMPT, "position": 2, "top_neurons": 0})
    facts = b.text("#panel .facts")
    assert shows(facts, "model's logit {}", dla["logit"])
    assert shows(facts, "sum of the shares {}", dla["sum_of_contributions"])
    b.shot("dla")

    open_panel(b, "lens")
    b.wait_for("#panel canvas.heatmap")
    assert "What it does not prove." in b.text("#panel")

    # Ablation: mark two heads on the canvas, run it, compare with the API.
    open_panel(b, "ablation")
    b.click_cell("#panel canvas.heatmap", 0, 1)
    b.wait_text("#ablate-marked", "L0H1")
    b.click_cell("#panel canvas.heatmap", 2, 3)
    b.wait_text("#ablate-marked", "L0H1, L2H3")
    b.click("//button[normalize-space()='Ablate selected heads']")
    b.wait_for("#panel .ablation-result")
    body = {"prompt": PROMPT, "heads": [[0, 1], [2, 3]], "position": 2, "how": "zero", "metric": "prob"}
    ablation = tiny_server.post("ablate", body)
    shown = b.text("#panel .ablation-result")
    assert shows(shown, "clean {} \u2192 ablated {}", ablation["clean"], ablation["ablated"], f=pct)
    b.shot("ablation")

    # Every panel opens with its notes.
    for panel in PANELS:
        text = open_panel(b, panel)
        assert "What you see." in text and "What it does not prove." in text, panel
        assert b.attr(f"#tab-{panel}", "aria-selected") == "true"

    assert b.errors() == []
    outside = [u for u in b.resources() if not u.startswith(tiny_server.url + "/")]
    assert outside == [], f"requests left the machine: {outside}"
