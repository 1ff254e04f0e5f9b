"""The workbench in Chromium against the real server on a tiny random model: quick checks of every panel,
the token strip, the interventions, exports, saved experiments and the tutorial, comparing what the page
shows with what the API answers for the same question."""

from __future__ import annotations

import json
from pathlib import Path

from .shown import PANELS, pct, run_induction_demo, show_token, shows

PROMPT = "the cat sat on the mat"


def test_tokens_selection_and_every_panel(page, tiny_server):
    page.analyse(PROMPT)
    tokens = tiny_server.post("tokens", {"prompt": PROMPT})["tokens"]
    shown = page.page.locator("#tokens .tok").all_inner_texts()
    assert shown == [show_token(t["token"]) for t in tokens]
    last = len(tokens) - 1
    assert page.page.get_attribute("#tokens .tok.selected", "data-pos") == str(last)

    # Click a token: the predictions are those after that position, as the API gives them.
    page.page.click('#tokens .tok[data-pos="3"]')
    page.wait_text("#panel .facts", "After token 3")
    expected = tiny_server.post("predict", {"prompt": PROMPT, "k": 10, "position": 3})
    facts = page.page.inner_text("#panel .facts")
    assert shows(facts, "entropy {} nats", expected["entropy_nats"])
    assert shows(facts, "{}", expected["top"][0]["probability"], f=pct)
    bars = page.page.text_content("#panel svg")
    for t in expected["top"][:5]:
        assert shows(bars, "{}", t["probability"], f=pct)

    # Keyboard: the arrow keys move the selection.
    page.page.focus("#tokens")
    page.page.keyboard.press("ArrowLeft")
    page.wait_text("#panel .facts", "After token 2")
    assert page.page.get_attribute("#tokens .tok.selected", "data-pos") == "2"
    page.page.keyboard.press("End")
    page.wait_text("#panel .facts", f"After token {last}")

    for panel in PANELS:
        text = page.open_panel(panel)
        assert "What you see." in text and "What it does not prove." in text, panel
        assert page.page.get_attribute(f"#tab-{panel}", "aria-selected") == "true"
        assert page.page.get_attribute(f"#tab-{panel}", "title"), f"{panel} tab has no tooltip"
    text = page.open_panel("sae")
    assert "No SAE for layer 1 of tiny-llama is on this machine" in text and "Train an SAE for layer 1" in text
    page.shot("panels")


def test_attention_head_click_and_hover(page, tiny_server):
    page.analyse(PROMPT)
    page.open_panel("attention")
    page.click_cell("#panel canvas.heatmap", 2, 1)  # layer 2, head 1
    page.wait_text("#panel figcaption", "L2H1: how much each token")
    page.wait_text("#panel table.reads caption", "layer 2")
    n = len(tiny_server.post("tokens", {"prompt": PROMPT})["tokens"])
    api = tiny_server.post("attention", {"prompt": PROMPT, "layer": 2, "head": 1, "query_position": n - 1, "top_k": 5})
    reads = page.page.inner_text("#panel table.reads")
    top = next(r for r in api["reads"] if r["layer"] == 2 and r["head"] == 1)["keys"][0]
    assert shows(reads, f"{top['position']} {show_token(top['token'])}: {{}}", top["weight"])
    # Hovering a token colours the strip by what it reads in the selected head.
    page.page.hover('#tokens .tok[data-pos="4"]')
    page.wait_text("#strip-note", "reads in L2H1")
    style = page.page.get_attribute('#tokens .tok[data-pos="0"]', "style") or ""
    assert "background" in style
    # The summary switch re-colours the grid without a request (once the background prefetch is over).
    page.page.wait_for_selector("body[data-prefetch=done]")
    before = len(page.requests)
    page.page.select_option("#attn-agg", "entropy")
    page.wait_text("#panel figcaption", "Every head (entropy)")
    assert page.api_requests_since(before) == []


def test_switching_tokens_heads_and_panels_needs_no_request(page):
    page.analyse(PROMPT)
    page.page.wait_for_selector("body[data-prefetch=done]")
    before = len(page.requests)
    for panel in ["predictions", "attention", "dla", "lens"]:
        page.open_panel(panel)
        for pos in (1, 3, 5):
            page.page.click(f'#tokens .tok[data-pos="{pos}"]')
            page.page.wait_for_selector(f'#tokens .tok.selected[data-pos="{pos}"]')
            assert "Computing" not in page.page.inner_text("#panel"), (panel, pos)
    page.open_panel("attention")
    page.click_cell("#panel canvas.heatmap", 1, 3)
    page.wait_text("#panel figcaption", "L1H3")
    assert page.api_requests_since(before) == []


def test_ablation_patching_steering_circuit(page, tiny_server):
    page.analyse(PROMPT)
    n = len(tiny_server.post("tokens", {"prompt": PROMPT})["tokens"])

    page.open_panel("ablation")
    page.click_cell("#panel canvas.heatmap", 0, 1)
    page.wait_text("#ablate-marked", "L0H1")
    page.click_cell("#panel canvas.heatmap", 2, 3)
    page.wait_text("#ablate-marked", "L2H3")
    page.page.click("text=Ablate selected heads")
    page.page.wait_for_selector("#panel .ablation-result")
    body = {"prompt": PROMPT, "heads": [[0, 1], [2, 3]], "position": n - 1, "how": "zero", "metric": "prob"}
    api = tiny_server.post("ablate", body)
    result = page.page.inner_text("#panel .ablation-result")
    assert shows(result, "clean {} \u2192 ablated {}", api["clean"], api["ablated"], f=pct)
    table = page.page.inner_text("#panel table.compare")  # the top predictions before and after
    for clean, ablated in zip(api["predictions"]["clean"], api["predictions"]["ablated"], strict=True):
        assert shows(table, "{}", clean["probability"], f=pct) and shows(table, "{}", ablated["probability"], f=pct)
    page.page.select_option("#ablate-metric", "logit")
    page.page.click("text=Ablate selected heads")
    page.wait_text("#panel .ablation-result", "logit")
    api = tiny_server.post("ablate", {**body, "metric": "logit"})
    result = page.page.inner_text("#panel .ablation-result")
    assert shows(result, "clean {} \u2192 ablated {}", api["clean"], api["ablated"])
    page.page.click("text=Sweep every head")
    page.wait_text("#panel figcaption", "Change of the metric when each head alone is ablated")
    page.shot("ablation")

    page.open_panel("patching")
    corrupted = "the dog sat on the mat"
    page.page.fill("#patching-corrupted", corrupted)
    page.page.fill("#patching-target", " mat")
    page.page.fill("#patching-versus", " park")
    page.page.click("text=Patch layers \u00d7 positions")
    page.page.wait_for_selector("#panel .patch-facts")
    api = tiny_server.post(
        "patch",
        {
            "clean": PROMPT,
            "corrupted": corrupted,
            "metric": "logit_diff",
            "target": " mat",
            "versus": " park",
            "site": "resid_pre",
        },
    )
    facts = page.page.inner_text("#panel .patch-facts")
    assert shows(facts, "clean {}, corrupted {}", api["clean_value"], api["corrupted_value"])
    page.page.click("text=Patch layers \u00d7 heads")
    page.wait_text("#panel figcaption", "layer (row) \u00d7 head (column)")
    assert page.page.locator("#panel canvas.heatmap").count() == 2
    page.shot("patching")

    page.open_panel("circuit")
    assert page.page.input_value("#circuit-corrupted") == corrupted  # shared with patching
    page.page.click("text=Find the circuit")
    page.page.wait_for_selector("#panel svg g.node")
    assert page.page.locator("#panel svg g.node").count() >= 2
    page.shot("circuit")

    page.open_panel("steering")
    page.page.fill("#steer-pairs", "the cat | the dog\nthe mat | the park")
    page.page.fill("#steer-layer", "1")
    page.page.fill("#steer-scales", "-4, 4")
    page.page.fill("#steer-tokens", "4")
    page.page.click("#panel button:has-text('Steer')")
    page.page.wait_for_selector("#panel table.steer-table")
    api = tiny_server.post(
        "steer",
        {
            "prompt": PROMPT,
            "pairs": [["the cat", "the dog"], ["the mat", "the park"]],
            "layer": 1,
            "scales": [-4, 4],
            "max_new_tokens": 4,
        },
    )
    rows = page.page.locator("#panel table.steer-table tbody tr").all_inner_texts()
    assert len(rows) == 3 and rows[0].startswith("baseline")
    for row, expected in zip(rows, [api["baseline"], *api["steered"]], strict=True):
        assert expected["completion"].strip() in row
        assert shows(row, "{}", expected["projection"])
    page.shot("steering")


def test_report_export_and_chart_downloads(page, tiny_server):
    page.analyse(PROMPT)
    page.open_panel("dla")
    with page.page.expect_download() as info:
        page.page.click("#panel figure.chart >> nth=0 >> text=SVG")
    svg = Path(info.value.path()).read_text(encoding="utf-8")
    assert svg.startswith("<svg") and "Running sum" in svg
    with page.page.expect_download() as info:
        page.page.click("#panel figure.chart >> nth=0 >> text=PNG")
    assert Path(info.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with page.page.expect_download() as info:
        page.page.click("#panel figure.chart >> nth=0 >> text=JSON")
    data = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    api = tiny_server.post("overview", {"prompt": PROMPT, "k": 10, "position": -1})["attribution"]
    assert data["heads"] == api["heads"] and data["kind"] == "logit_attribution"

    with page.page.expect_download() as info:
        page.page.click("#report-btn")
    html = Path(info.value.path()).read_text(encoding="utf-8")
    assert info.value.suggested_filename.endswith(".html")
    for title in [
        "Predictions",
        "Attention",
        "Logit lens",
        "Direct logit attribution",
        "Neurons",
        "Activation patching",
    ]:
        assert f">{title}</h2>" in html
    assert html.count("What it does not prove.") == len(PANELS)
    assert html.count("<svg") >= 5 and "<style>" in html
    # Offline: nothing to fetch (no scripts, stylesheets or remote images).
    for forbidden in ("<script", "<link", 'src="http', "src='http", "@import"):
        assert forbidden not in html
    report = page.context.new_page()
    report.set_content(html)
    assert report.locator("h2", has_text="Direct logit attribution").count() == 1
    report.close()


def test_save_and_reopen_experiment(page, tiny_server, chromium, open_page):
    page.analyse(PROMPT)
    page.page.click('#tokens .tok[data-pos="2"]')
    page.open_panel("dla")
    page.page.wait_for_selector("#panel .facts")
    dla_text = page.page.inner_text("#panel .facts")
    page.page.click("#save-btn")
    page.page.fill("#exp-name", "tiny cat")
    page.page.click("#exp-save-btn")
    page.wait_text("#exp-msg", 'Saved "tiny cat"')
    assert any(e["name"] == "tiny cat" for e in tiny_server.http.get("/api/experiments").json()["experiments"])

    fresh = open_page(tiny_server)  # a new tab: nothing cached
    fresh.page.click("#open-btn")
    fresh.page.locator("#exp-list li", has_text="tiny cat").locator("button", has_text="Open").click()
    fresh.page.wait_for_selector('#tokens .tok.selected[data-pos="2"]')
    assert fresh.page.input_value("#prompt") == PROMPT
    assert fresh.page.get_attribute("#tab-dla", "aria-selected") == "true"
    fresh.wait_text("#panel .facts", "Target")
    assert fresh.page.inner_text("#panel .facts") == dla_text
    assert not any(r.startswith("POST") and r.split()[1].split("?")[0] in ("overview", "dla") for r in fresh.requests)
    fresh.shot("reopened")


def test_tutorial_can_be_left_and_resumed(page, tiny_server, open_page):
    page.page.click("#tutorial-btn")
    page.wait_text("#tut-title", "Demo 1")
    page.page.wait_for_selector("body[data-analysis=done]")
    page.page.click("#tut-next")
    page.wait_text("#tut-count", "step 2 of")
    assert page.page.get_attribute("#tab-attention", "aria-selected") == "true"
    page.page.click("#tut-close")
    assert page.page.is_hidden("#tutorial")
    assert page.page.inner_text("#tutorial-btn") == "Resume tutorial"
    page.page.reload()
    page.page.wait_for_selector("body[data-ready=true]")
    page.page.click("#tutorial-btn")
    page.wait_text("#tut-count", "step 2 of")
    page.wait_text("#tut-title", "Who looks back?")
    page.shot("tutorial")


def test_every_control_has_a_tooltip(page):
    page.analyse(PROMPT)
    for panel in PANELS:
        page.open_panel(panel)
        missing = page.page.evaluate(
            """() => [...document.querySelectorAll('button, select, input, textarea, canvas')]
                 .filter((el) => el.offsetParent !== null && !el.title && !el.closest('label[title]'))
                 .filter((el) => !el.getAttribute('aria-label'))
                 .map((el) => el.id || el.textContent.trim() || el.tagName)"""
        )
        assert missing == [], (panel, missing)


def test_model_switcher_reports_a_failed_load(page):
    page.page.fill("#model-source", "no-such-org/no-such-model")
    page.page.click("#model-load")
    page.wait_text("#message", "Could not load")
    assert "not in the local Hugging Face cache" in page.page.inner_text("#message")
    assert page.page.inner_text("#model-name") == "tiny-llama"  # the loaded model keeps answering
    assert page.page.is_hidden("#model-progress")


def test_bad_prompts_get_a_one_line_message(page):
    page.page.fill("#prompt", "   ")
    page.page.click("#analyse")
    page.wait_text("#message", "Type a prompt first")
    page.page.fill("#prompt", "the cat " * 600)  # over the server's 4000 characters
    page.page.click("#analyse")
    page.page.wait_for_selector("body[data-analysis=failed]")
    message = page.page.inner_text("#message")
    assert "prompt" in message and "\n" not in message.strip()
    page.errors.clear()  # the browser logs the refused request itself; the page showed it as a message


def test_tutorial_induction_demo_matches_the_api(page, tiny_server):
    page.page.click("#tutorial-btn")
    page.page.wait_for_selector("body[data-analysis=done]")
    while "Do we need them?" not in page.page.inner_text("#tut-title"):
        page.page.click("#tut-next")
    tutorial = page.page.inner_text("#tut-text")
    assert "backup heads" in tutorial and "random heads" in tutorial
    text, induction, random, _, _ = run_induction_demo(page, tiny_server)
    roles = tiny_server.post("head-roles", {"seq_len": 12, "n_seqs": 8})
    assert induction == [[t["layer"], t["head"]] for t in roles["random"]["induction"]["top"][:3]]
    assert len(random) == 3 and not {tuple(h) for h in random} & {tuple(h) for h in induction}
    assert "seed 1" in text  # the control is reproducible: the same heads on every run
    page.shot("induction-demo")


def test_head_roles_sends_a_head_to_ablation(page, tiny_server):
    page.analyse(PROMPT)
    page.open_panel("roles")
    page.page.wait_for_selector("#panel canvas.heatmap")
    page.click_cell("#panel canvas.heatmap", 1, 2)
    page.page.click("#panel .ablate-this")
    page.wait_text("#ablate-marked", "L1H2")
    page.page.wait_for_selector("#panel .ablation-result")
    n = len(tiny_server.post("tokens", {"prompt": PROMPT})["tokens"])
    api = tiny_server.post(
        "ablate", {"prompt": PROMPT, "heads": [[1, 2]], "position": n - 1, "how": "zero", "metric": "prob"}
    )
    assert shows(
        page.page.inner_text("#panel .ablation-result"),
        "clean {} \u2192 ablated {}",
        api["clean"],
        api["ablated"],
        f=pct,
    )
