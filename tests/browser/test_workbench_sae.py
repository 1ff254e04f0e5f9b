"""The SAE panel and feature clamps in Chromium, on a tiny model with a small SAE saved in a temporary store:
features at the selected token, a feature's dashboard and a clamp sweep, compared with the API's answers;
and, on a tiny model with an empty store, the layer selector and training an SAE for a layer from the panel."""

from __future__ import annotations

import pytest

from tests.deadlines import MODEL_S, ms

from .conftest import Server
from .saes import tiny_sae_server
from .shown import fmt, forms, pct, show_token, shows

PROMPT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def sae_server(tmp_path_factory):
    with tiny_sae_server(tmp_path_factory.mktemp("sae-home")) as server:
        yield server


def test_sae_features_dashboard_and_clamps(open_page, sae_server):
    page = open_page(sae_server)
    page.analyse(PROMPT)
    page.page.click('#tokens .tok[data-pos="3"]')
    page.open_panel("sae")
    page.page.wait_for_selector("#panel .sae-facts")
    api = sae_server.post("sae-features", {"prompt": PROMPT, "sae": "store:tiny-sae", "top": 10})
    token = next(t for t in api["tokens"] if t["position"] == 3)
    facts = page.page.inner_text("#panel .sae-facts")
    assert f"{token['l0']} features fire at position 3" in facts and shows(facts, "{}", token["relative_error"], f=pct)
    bars = page.page.text_content("#panel svg")
    for f in token["top"][:3]:
        assert f"F{f['feature']}" in bars and shows(bars, "{}", f["activation"])

    # The dashboard of the strongest feature opens by itself; another bar opens that feature's.
    second = token["top"][1]["feature"]
    page.page.locator("#panel svg g.bar").nth(1).click()
    page.wait_text("#panel .dashboard h3", f"Feature {second}: dashboard")
    page.page.wait_for_selector("#panel .dashboard-facts")
    dash = sae_server.post("sae-dashboard", {"feature": second, "sae": "store:tiny-sae", "k": 10})
    assert shows(page.page.inner_text("#panel .dashboard-facts"), "strongest activation {}", dash["max_activation"])
    page.shot("sae")
    page.page.set_viewport_size({"width": 390, "height": 800})  # a phone: bars and dashboard fit the width
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 390
    page.page.set_viewport_size({"width": 1320, "height": 900})

    page.open_panel("steering")
    page.page.fill("#clamp-features", str(second))
    page.page.fill("#clamp-amounts", "0, 5")
    page.page.fill("#steer-tokens", "3")
    page.page.click("text=Clamp features")
    page.page.wait_for_selector("#panel table.clamp-table")
    body = {"prompt": PROMPT, "sae": "store:tiny-sae", "features": [second], "mode": "value", "amounts": [0, 5]}
    sweep = sae_server.post("sae-clamp", {**body, "max_new_tokens": 3})
    rows = page.page.locator("#panel table.clamp-table tbody tr").all_inner_texts()
    assert len(rows) == 3 and rows[0].startswith("baseline")
    for row, expected in zip(rows[1:], sweep["rows"], strict=True):
        assert shows(row, "{}", expected["kl"])
    page.shot("clamps")
    assert not page.errors, page.errors


def test_clamp_this_feature_from_its_dashboard(open_page, sae_server):
    """The dashboard's clamp uses 0, 1x, 2x and 4x the dashboard's strongest activation; each row is the API's."""
    page = open_page(sae_server)
    page.page.set_viewport_size({"width": 1400, "height": 900})
    page.analyse(PROMPT)
    page.page.click('#tokens .tok[data-pos="3"]')
    page.open_panel("sae")
    page.page.wait_for_selector("#panel .feature-clamp .clamp-scale")
    feature = int(page.page.inner_text("#panel .dashboard h3").split()[1].rstrip(":"))
    dash = sae_server.post("sae-dashboard", {"feature": feature, "sae": "store:tiny-sae", "k": 10})
    top = dash["max_activation"]
    assert top > 0
    scale = page.page.inner_text("#panel .clamp-scale")
    assert shows(scale, "1\u00d7 = {}, feature", top) and f"{dash['tokens']:,} corpus tokens" in scale

    with page.page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/jobs")) as posted:
        page.page.click("#panel .feature-clamp button:has-text('Clamp this feature')")
    page.page.wait_for_selector("#panel table.feature-clamp-table")
    sent = posted.value.post_data_json
    amounts = [0.0, top, 2 * top, 4 * top]
    assert sent["kind"] == "sae-clamp" and sent["params"]["features"] == [feature]
    assert all(abs(a - b) <= 1e-6 * top for a, b in zip(sent["params"]["amounts"], amounts, strict=True))
    body = {"prompt": PROMPT, "sae": "store:tiny-sae", "features": [feature], "mode": "value", "max_new_tokens": 12}
    sweep = sae_server.post("sae-clamp", {**body, "amounts": amounts})
    rows = page.page.locator("#panel table.feature-clamp-table tbody tr").all_inner_texts()
    assert len(rows) == 5 and rows[0].startswith("baseline") and PROMPT + sweep["baseline"] in rows[0]
    assert rows[1].startswith("off (0)") and shows(rows[0], "\t{}\t0", sweep["baseline_top_prob"], f=pct)
    for row, multiple in zip(rows[2:], [1, 2, 4], strict=True):
        assert shows(row, f"{multiple}\u00d7 = {{}}", multiple * top)
    texts = page.page.locator("#panel table.feature-clamp-table tbody td.text").all_inner_texts()
    assert texts == [PROMPT + sweep["baseline"], *(PROMPT + r["completion"] for r in sweep["rows"])]
    for row, expected in zip(rows[1:], sweep["rows"], strict=True):
        assert show_token(expected["next_top"]) in row
        assert shows(row, "\t{}\t", expected["baseline_top_prob"], f=pct)
        assert any(row.endswith(kl) for kl in forms(expected["kl"]))
    # A second route: one clamp at 1x (baseline and clamped generated through the splice) gives the same texts.
    single = sae_server.post("sae-clamp", {**body, "amount": top})
    assert texts[0] == PROMPT + single["baseline"] and texts[2] == PROMPT + single["clamped"]
    page.shot("feature-clamp")
    page.page.set_viewport_size({"width": 390, "height": 800})  # a phone: the clamp table fits the width
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 390
    assert not page.errors, page.errors


def test_precompute_button_labels_the_features_and_dashboards_then_read_the_atlas(open_page, sae_server):
    # Last of the SAE server's tests: it writes labels and the atlas beside its SAE.
    page = open_page(sae_server)
    page.analyse(PROMPT)
    page.open_panel("sae")
    page.page.wait_for_selector("#panel .dashboard-facts")
    before = page.page.inner_text("#panel .dashboard-facts")
    assert "64 sequences" in before  # a live scan
    page.page.click("#panel .precompute button:has-text('Precompute every dashboard and label')")
    page.page.wait_for_selector("#panel .precompute", state="detached", timeout=ms(MODEL_S))
    page.page.wait_for_selector("#panel .all-dense, #panel .dashboard-facts")
    if page.page.locator("#panel .all-dense").count():  # this random SAE's features fire on most tokens
        page.page.check("#sae-dense")
    page.page.wait_for_selector("#panel .detection")
    feature = int(page.page.inner_text("#panel .dashboard h3").split()[1].rstrip(":"))
    dash = sae_server.post("sae-dashboard", {"feature": feature, "sae": "store:tiny-sae", "k": 10})
    assert dash["sequences"] == 1024 and "train split" in dash["corpus"]  # read from the atlas
    facts = page.page.inner_text("#panel .dashboard-facts")
    assert f"{dash['tokens']:,} tokens of {dash['corpus']}" in facts and "1,024 sequences" in facts
    detection = dash["label"]["detection"]
    label_f1 = shows(
        page.page.inner_text("#panel .detection"), "Label score: F1 {}", detection["f1"], f=lambda x: fmt(x, 2)
    )
    assert label_f1
    assert "[label F1" in page.page.text_content("#panel svg")  # the bars show each label's score
    assert not page.errors, page.errors


# The training test comes last: its server's store (GLASSLAB_HOME) replaces the SAE server's for the module.


TRAIN = {"expansion": 4, "k": 4, "tokens": 256 * 24, "harvest_tokens": 2048, "batch_size": 256, "evaluate_tokens": 256}
TRAINED = "store:blocks.1.resid_post-topk-128-k4-app"


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory):
    from tests.tiny import tiny_model

    home = tmp_path_factory.mktemp("sae-train-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(home))
        server = Server(tiny_model("llama"), home / "experiments.sqlite", sae_training=TRAIN)
        yield server
        server.stop()


def test_train_an_sae_for_a_layer_from_the_panel(open_page, empty_server):
    page = open_page(empty_server)
    page.analyse(PROMPT)
    page.page.click('#tokens .tok[data-pos="3"]')
    page.open_panel("sae")
    options = page.page.locator("#sae-layer option").all_inner_texts()
    assert options == [f"Layer {layer}: no SAE yet" for layer in range(3)]
    page.page.select_option("#sae-layer", "1")
    page.wait_text("#panel .empty-state", "No SAE for layer 1 of tiny-llama is on this machine")
    page.wait_text("#panel .train-sae h3", "Train an SAE for layer 1")
    assert "Train an SAE for this layer" in page.page.text_content("#panel details.read")

    # The time is measured before anything is trained; then the training runs as a job with progress.
    page.page.click("text=Estimate the time")
    page.wait_text("#panel .train-status", "Estimated time on this machine: about")
    assert f"It will be saved as {TRAINED}" in page.page.inner_text("#panel .train-status")
    assert page.page.get_attribute("#panel .train-sae button.primary", "title")
    page.shot("sae-estimate")
    page.page.click("#panel .train-sae button.primary")
    # While the job runs, a progress bar and a Cancel button with a tooltip show. A fast machine may finish
    # the tiny training within one poll of the page (500 ms), so both are read in one look, not one by one.
    cancel_title = page.page.wait_for_function(
        """() => document.querySelector('#panel progress.train-progress')
                 && [...document.querySelectorAll('#panel .train-sae button')]
                      .find((b) => b.textContent === 'Cancel training')?.title"""
    )
    assert cancel_title.json_value()
    page.shot("sae-training")
    page.page.wait_for_selector("#panel .sae-facts", timeout=ms(MODEL_S))

    # The new SAE is listed for layer 1, chosen, and its features are the API's for that SAE.
    assert page.page.locator("#sae-layer option").nth(1).inner_text() == f"Layer 1: {TRAINED} (trained)"
    assert page.page.input_value("#sae-name") == TRAINED
    api = empty_server.post("sae-features", {"prompt": PROMPT, "sae": TRAINED, "top": 10})
    token = next(t for t in api["tokens"] if t["position"] == 3)
    facts = page.page.inner_text("#panel .sae-facts")
    assert f"{TRAINED} at blocks.1.resid_post: {token['l0']} features fire at position 3" in facts
    assert shows(facts, "{}", token["relative_error"], f=pct)
    note = page.page.inner_text("#panel .trained-note")
    [job] = [j for j in empty_server.http.get("/api/jobs").json()["jobs"] if j["job_kind"] == "sae-train"]
    assert job["status"] == "done"
    evaluation = empty_server.http.get(f"/api/jobs/{job['id']}").json()["result"]["evaluation"]
    assert shows(note, "explains {} of the activation's variance", evaluation["fve"], f=pct) and "rough" in note
    page.shot("sae-trained")
    assert not page.errors, page.errors
