"""Feature search in the SAE panel, in Chromium, on a tiny model with a labelled SAE in a temporary store: the
results are the API's, a result opens its feature's dashboard, and a query nothing matches says so."""

from __future__ import annotations

import pytest

from .saes import tiny_sae_server

PROMPT = "the cat sat on the mat"
LABELS = {
    3: ("fires on ' cat'", {"fires_on": [" cat"], "words": [["cat", 9]], "density": 0.01}),
    7: ("fires on ' mat'", {"fires_on": [" mat"], "contexts": ["the cat sat on the mat"], "density": 0.01}),
    9: ("fires on ' paris'", {"fires_on": [" paris"], "density": 0.01}),
}


@pytest.fixture(scope="module")
def search_server(tmp_path_factory):
    from glasslab.dictionaries.labels_file import FeatureLabel

    labels = {f: FeatureLabel(text, "auto", extra) for f, (text, extra) in LABELS.items()}
    with tiny_sae_server(tmp_path_factory.mktemp("sae-search-home"), labels) as server:
        yield server


def test_search_features_and_open_one(open_page, search_server):
    page = open_page(search_server)
    page.analyse(PROMPT)
    page.open_panel("sae")
    page.page.fill("#sae-search-query", "cats")
    page.page.click("#panel .feature-search button[type=submit]")
    page.page.wait_for_selector("#panel table.search-results")
    api = search_server.post("sae-search", {"sae": "store:tiny-sae", "query": "cats", "top": 20})
    rows = page.page.locator("#panel table.search-results tbody tr").all_inner_texts()
    assert [row.split()[0] for row in rows] == [f"F{hit['feature']}" for hit in api["hits"]]
    assert api["hits"][0]["feature"] == 3 and "words: cat" in rows[0]

    page.page.locator("#panel table.search-results tbody tr").nth(1).locator("button").click()
    second = api["hits"][1]["feature"]
    page.wait_text("#panel .dashboard h3", f"Feature {second}: dashboard")
    assert page.page.input_value("#sae-search-query") == "cats"  # the search stays
    page.shot("sae-search")

    page.page.fill("#sae-search-query", "zebra")
    page.page.click("#panel .feature-search button[type=submit]")
    page.wait_text("#panel .search-none", "No labelled feature")
    assert not page.errors, page.errors
