"""The SAE panel's feature demo in Chromium on a tiny model: the feature search's top match for a concept is
clamped at multiples of its strongest activation, and the concept words counted in each continuation equal
a count made here from the API's own answers (the effect on the real model: test_workbench_default.py)."""

from __future__ import annotations

import re

import pytest

from tests.deadlines import MODEL_S, ms

from .saes import tiny_sae_server

PROMPT = "the cat sat on the mat"
CONCEPT = "cat"


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    from glasslab.dictionaries.labels_file import FeatureLabel

    labels = {  # a labelled SAE as the labeller writes them (test data: which feature is which is arbitrary)
        7: FeatureLabel("fires on ' cat', ' dog'", "auto", {"density": 0.02, "words": [["cat", 5], ["dog", 2]]}),
        9: FeatureLabel("fires on ' paris'", "auto", {"density": 0.01, "words": [["paris", 4]]}),
    }
    with tiny_sae_server(tmp_path_factory.mktemp("demo-home"), labels) as server:
        yield server


def test_feature_demo_clamps_the_search_s_top_match_and_counts_its_words(open_page, demo_server):
    page = open_page(demo_server)
    page.analyse(PROMPT)
    page.open_panel("sae")
    page.page.fill("#demo-concept", CONCEPT)
    page.page.click("#panel .feature-demo button:has-text('Find the feature and clamp it')")
    page.page.wait_for_selector("#panel .feature-demo-table", timeout=ms(MODEL_S))
    search = demo_server.post(
        "sae-search", {"sae": "store:tiny-sae", "query": CONCEPT, "top": 1, "exclude_dense": True}
    )
    feature = search["hits"][0]["feature"]
    assert feature == 7 and f"Feature {feature}, the best match" in page.page.inner_text("#panel .demo-feature")
    dash = demo_server.post("sae-dashboard", {"feature": feature, "sae": "store:tiny-sae", "k": 10})
    top = dash["max_activation"]
    clamp = demo_server.post(
        "sae-clamp",
        {"prompt": PROMPT, "sae": "store:tiny-sae", "features": [feature], "mode": "value",
         "amounts": [0, top, 2 * top, 4 * top], "max_new_tokens": 12},
    )  # fmt: skip
    words = {"cat", "dog"}  # the concept and the words the feature's label says it fires on

    def count(text: str) -> int:
        return sum(w in words for w in re.findall(r"[a-z][a-z'-]*", text.lower()))

    shown = [int(c.split()[0]) for c in page.page.locator("#panel .feature-demo-table td.demo-count").all_inner_texts()]
    assert shown == [count(clamp["baseline"]), *(count(r["completion"]) for r in clamp["rows"])]
    result = page.page.inner_text("#panel .demo-result")
    best = max(shown[1:])
    assert (f"uses {best} of the concept" in result) if best > shown[0] else ("No clamp strength" in result)
    assert not page.errors, page.errors


def test_a_concept_no_label_matches_says_so(open_page, demo_server):
    page = open_page(demo_server)
    page.analyse(PROMPT)
    page.open_panel("sae")
    page.page.fill("#demo-concept", "zzzz")
    page.page.click("#panel .feature-demo button:has-text('Find the feature and clamp it')")
    page.wait_text("#panel .demo-none", "matches \u201czzzz\u201d")
    assert not page.errors, page.errors
