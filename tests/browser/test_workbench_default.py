"""The workbench in Chromium on the default model (Gemma 3 270M): one walk through the place demo, checking
the values on screen against the API, with a screenshot of every panel kept in test-artifacts/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .shown import pct, run_induction_demo, shows

pytestmark = pytest.mark.slow

EIFFEL = "The Eiffel Tower is in the city of"
COLOSSEUM = "The Colosseum is in the city of"


def test_eiffel_tower_walkthrough(open_page, default_server):
    page = open_page(default_server)
    page.analyse(EIFFEL)
    api = default_server.post("overview", {"prompt": EIFFEL, "k": 10, "position": -1})
    top = api["prediction"]["top"][0]
    assert top["token"] == " Paris"
    facts = page.page.inner_text("#panel .facts")
    assert "Paris" in page.page.inner_text("#panel .top-guess") and shows(facts, "{}", top["probability"], f=pct)
    page.shot("predictions")

    text = page.open_panel("attention")
    assert f"Selected head: L{api['attention']['layer']}H{api['attention']['head']}" in text
    page.page.wait_for_selector("#panel table.reads")
    page.shot("attention")

    page.open_panel("dla")
    d = api["attribution"]
    page.wait_text("#panel .facts", "model's logit")
    facts = page.page.inner_text("#panel .facts")
    assert shows(facts, "model's logit {}", d["logit"])
    assert shows(facts, "sum of the shares {}", d["sum_of_contributions"])
    page.shot("dla")

    page.open_panel("neurons")
    page.page.wait_for_selector("#panel svg")
    n = len(api["attention"]["tokens"])
    neurons = default_server.post("neurons", {"prompt": EIFFEL, "position": n - 1, "top": 10, "target": " Paris"})
    first = neurons["most_active"][0]
    assert f"L{first['layer']}.N{first['neuron']}" in page.page.text_content("#panel svg")
    page.shot("neurons")

    page.open_panel("lens")
    page.page.wait_for_selector("#panel canvas.heatmap")
    page.page.wait_for_function("!document.querySelector('#panel .lens-note')")
    page.shot("lens")

    page.open_panel("ablation")
    page.click_cell("#panel canvas.heatmap", 5, 1)
    page.page.click("text=Ablate selected heads")
    page.page.wait_for_selector("#panel .ablation-result")
    body = {"prompt": EIFFEL, "heads": [[5, 1]], "position": n - 1, "how": "zero", "metric": "prob"}
    ablation = default_server.post("ablate", body)
    shown = page.page.inner_text("#panel .ablation-result")
    assert "Paris" in shown
    assert shows(shown, "clean {} \u2192 ablated {}", ablation["clean"], ablation["ablated"], f=pct)
    page.shot("ablation")

    page.open_panel("patching")
    assert page.page.input_value("#patching-corrupted") == COLOSSEUM  # the demo's corruption is filled in
    page.page.click("text=Patch layers \u00d7 positions")
    page.page.wait_for_selector("#panel .patch-facts")
    patch = default_server.post(
        "patch", {"clean": EIFFEL, "corrupted": COLOSSEUM, "metric": "logit_diff", "site": "resid_pre"}
    )
    assert "Paris" in patch["metric"] and "Rome" in patch["metric"]
    facts = page.page.inner_text("#panel .patch-facts")
    assert shows(facts, "clean {}, corrupted {}", patch["clean_value"], patch["corrupted_value"])
    page.shot("patching")

    page.open_panel("steering")
    page.page.fill("#steer-layer", "6")
    page.page.fill("#steer-scales", "-8, 8")
    page.page.fill("#steer-tokens", "6")
    page.page.click("#panel button:has-text('Steer')")
    page.page.wait_for_selector("#panel table.steer-table")
    rows = page.page.locator("#panel table.steer-table tbody tr").all_inner_texts()
    assert [r.split("\t")[0] for r in rows] == ["baseline (no steering)", "scale -8", "scale 8"]
    page.shot("steering")

    # The SAEs shipped for the default model: named features with no network and no training.
    page.open_panel("sae")
    shipped = "default:blocks.6.resid_post-topk-5120-k32"
    options = page.page.locator("#sae-layer option").all_inner_texts()
    assert any(o.startswith("Layer 6: ") and "shipped" in o for o in options), options
    page.page.select_option("#sae-layer", "6")
    if page.page.locator("#sae-name").count():  # SAEs trained into this machine's store are listed too
        page.page.select_option("#sae-name", shipped)
    page.wait_text("#panel .sae-facts", shipped)
    facts = page.page.inner_text("#panel .sae-facts")
    position = int(re.search(r"fire at position (\d+)", facts).group(1))
    features = default_server.post("sae-features", {"prompt": EIFFEL, "sae": shipped, "top": 10, "max_density": 0.1})
    token = next(t for t in features["tokens"] if t["position"] == position)
    assert f"{token['l0']} features fire at position {position}" in facts
    bars = page.page.text_content("#panel svg")
    for f in token["top"][:3]:
        assert "fires on " in f["label"] or f["label"].startswith("rare"), f  # "<class>: fires on ..." too
        assert f"F{f['feature']}" in bars and shows(bars, "{}", f["activation"])
    assert "fires on" in bars  # the automatic labels are drawn beside the bars
    lefts = page.page.eval_on_selector_all(
        "#panel svg g.bar text[text-anchor=end]", "ts => ts.map((t) => t.getBBox().x)"
    )
    assert min(lefts) >= 0, lefts  # no label runs off the left edge, where its feature id is
    page.page.wait_for_selector("#panel .dashboard-facts")
    page.shot("sae-shipped")
    # On a phone the dashboard's contexts (tokens joined by no-break spaces) wrap: no sideways scrolling.
    page.page.set_viewport_size({"width": 390, "height": 800})
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 390
    page.page.set_viewport_size({"width": 1320, "height": 900})

    with page.page.expect_download() as info:
        page.page.click("#report-btn")
    html = Path(info.value.path()).read_text(encoding="utf-8")
    assert "Paris" in html and ">Activation patching</h2>" in html and "<script" not in html
    assert not page.errors, page.errors
    assert not page.outside, page.outside


def test_induction_demo_beats_its_random_control(open_page, default_server):
    """The tutorial's induction step on Gemma: the top 3 induction heads ablated together drop p(" park") far
    more than 3 random heads, and the page shows the API's values for both."""
    page = open_page(default_server)
    page.page.set_viewport_size({"width": 1400, "height": 900})
    page.page.click("#tutorial-btn")
    page.page.wait_for_selector("body[data-analysis=done]")
    while "Do we need them?" not in page.page.inner_text("#tut-title"):
        page.page.click("#tut-next")
    _, _, _, hit, ctl = run_induction_demo(page, default_server)
    assert hit["clean"] - hit["ablated"] > ctl["clean"] - ctl["ablated"]
    page.page.locator("#panel .induction-demo").scroll_into_view_if_needed()
    page.shot("induction-demo")


def _concept_words(concept: str, label: dict) -> set[str]:
    """The words the feature demo counts: the concept, the class the label names, the words it fires on."""
    words = set(re.findall(r"[a-z][a-z'-]*", concept.lower()))
    words |= set(re.findall(r"[a-z][a-z'-]*", (label.get("concept") or "").lower()))
    for word, _ in label.get("words", []):
        words |= set(re.findall(r"[a-z][a-z'-]*", word.lower()))
    return words


def test_feature_demo_moves_the_text_toward_its_concept(open_page, default_server):
    """The tutorial's feature step on Gemma: the search's top 'medical' feature of the layer-6 SAE, clamped,
    brings medical words into a continuation that has none; the page's counts are the API's answers'."""
    page = open_page(default_server)
    page.page.set_viewport_size({"width": 1400, "height": 900})
    page.page.click("#tutorial-btn")
    page.page.wait_for_selector("body[data-analysis=done]")
    while "Demo 3" not in page.page.inner_text("#tut-title"):
        page.page.click("#tut-next")
    page.page.wait_for_selector("body[data-analysis=done]")
    prompt = page.page.input_value("#prompt")
    page.page.click("#panel .feature-demo button:has-text('Find the feature and clamp it')")
    page.page.wait_for_selector("#panel .feature-demo-table")
    sae = "default:blocks.6.resid_post-topk-5120-k32"  # the widest labelled SAE shipped
    search = default_server.post("sae-search", {"sae": sae, "query": "medical", "top": 1, "exclude_dense": True})
    feature = search["hits"][0]["feature"]
    dash = default_server.post("sae-dashboard", {"feature": feature, "sae": sae, "k": 10})
    top = dash["max_activation"]
    body = {"prompt": prompt, "sae": sae, "features": [feature], "mode": "value", "max_new_tokens": 12}
    clamp = default_server.post("sae-clamp", {**body, "amounts": [0, top, 2 * top, 4 * top]})
    words = _concept_words("medical", dash["label"])

    def count(text: str) -> int:
        return sum(w in words for w in re.findall(r"[a-z][a-z'-]*", text.lower()))

    shown = [int(c.split()[0]) for c in page.page.locator("#panel .feature-demo-table td.demo-count").all_inner_texts()]
    assert shown == [count(clamp["baseline"]), *(count(r["completion"]) for r in clamp["rows"])]
    assert f"Feature {feature}, the best match" in page.page.inner_text("#panel .demo-feature")
    assert max(shown[2:]) > shown[0], (clamp["baseline"], clamp["rows"])  # the effect the tutorial promises
    assert "moves the text toward" in page.page.inner_text("#panel .demo-result")
    page.page.locator("#panel .feature-demo").scroll_into_view_if_needed()
    page.shot("feature-demo")
    assert not page.errors, page.errors


def test_sae_panel_on_the_doctor_prompt_at_desktop_and_phone_width(open_page, default_server):
    """The SAE panel as a newcomer sees it on "The doctor told the nurse that" (screenshots at 1400 and 390 px):
    the layer-6 features at " doctor" with their labels and scores, dense ones hidden, nothing overflowing."""
    page = open_page(default_server)
    page.page.set_viewport_size({"width": 1400, "height": 900})
    page.analyse("The doctor told the nurse that")
    page.page.click('#tokens .tok[data-pos="2"]')
    page.open_panel("sae")
    page.page.select_option("#sae-layer", "6")
    page.page.wait_for_selector("#panel .dashboard-facts")
    bars = page.page.text_content("#panel svg")
    sae = "default:blocks.6.resid_post-topk-5120-k32"
    body = {"prompt": "The doctor told the nurse that", "sae": sae, "top": 10, "max_density": 0.1}
    token = next(t for t in default_server.post("sae-features", body)["tokens"] if t["position"] == 2)
    assert token["dense"] and "Show dense features" in page.page.inner_text("#panel .dense-toggle")
    for f in token["top"][:3]:
        assert f"F{f['feature']}" in bars and f["label"] and f["detection"] is not None
    page.shot("sae-doctor-1400")
    page.page.set_viewport_size({"width": 390, "height": 800})
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 390
    page.shot("sae-doctor-390")
    assert not page.errors, page.errors
