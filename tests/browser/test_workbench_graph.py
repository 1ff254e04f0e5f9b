"""The attribution-graph panel in Chromium, on a tiny model with a set of random transcoders saved in a temporary
store: the graph is built and drawn (every node the API kept), the slider hides edges, a click shows a node's
details and its feature's dashboard, grouping makes a supernode, an intervention shows the graph's, the frozen
and the real change (the API's numbers) and the Neuronpedia JSON downloads; the standalone graph.html draws
with the same module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import Server
from .shown import fmt, shows

PROMPT = "the cat sat on the mat"
SCREENSHOT = Path("/tmp/glasslab-graph-panel.png")


@pytest.fixture(scope="module")
def graph_server(tmp_path_factory):
    from tests.graph_sets import random_transcoder_set
    from tests.tiny import tiny_model

    home = tmp_path_factory.mktemp("graph-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(home))
        model = tiny_model("llama")
        random_transcoder_set(model).save("mine", model.key)
        server = Server(model, home / "experiments.sqlite")
        try:
            yield server, model
        finally:
            server.stop()


def _signed(x: float) -> str:
    return ("\u2212" if x < 0 else "+") + fmt(abs(x))


def test_build_prune_select_group_and_intervene(open_page, graph_server):
    server, _ = graph_server
    page = open_page(server)
    page.page.set_viewport_size({"width": 1500, "height": 1000})
    page.analyse(PROMPT)
    text = page.open_panel("graph")
    assert "What it does not prove." in text
    page.page.wait_for_selector("#graph-set")
    assert page.page.input_value("#graph-set") == "mine"
    page.page.click("text=Build the graph")
    page.page.wait_for_selector("#panel .graph-canvas svg .node")
    api = server.post("graph", {"prompt": PROMPT, "transcoders": "mine"})
    svg = page.page.locator("#panel .graph-canvas svg")
    assert page.page.locator("#panel .graph-canvas svg .node").count() == len(api["nodes"])
    assert shows(page.page.inner_text("#panel .graph-scores"), "replacement score\t{}", api["scores"]["replacement"])
    first_shown = int(svg.get_attribute("data-edges-shown"))  # the edges carrying half the |weight|
    page.page.locator("#graph-share").fill("100")
    all_edges = int(svg.get_attribute("data-edges-shown"))
    assert all_edges == len(api["edges"]) > 10 and 0 < first_shown < all_edges

    page.page.locator("#graph-share").fill("20")
    fewer = int(svg.get_attribute("data-edges-shown"))
    assert 0 < fewer < all_edges
    assert f"{fewer} of {all_edges} edges" in page.page.inner_text("#panel .graph-share-text")

    features = sorted((n for n in api["nodes"] if n["kind"] == "feature"), key=lambda n: -n["influence"])
    first, second = features[0], features[1]
    page.page.locator(f'#panel svg .node[data-id="{first["id"]}"]').click()
    details = page.page.inner_text("#panel .node-details")
    assert first["id"] in details and shows(details, "activation {}", first["value"])
    # Clicking a feature node opens its dashboard (the transcoders-dashboard endpoint; this set has no
    # precomputed dashboards, so a live scan) in the details box.
    page.page.wait_for_selector("#panel .graph-dashboard .dashboard-facts", timeout=120_000)
    dash = server.post(
        "transcoders-dashboard", {"transcoders": "mine", "layer": first["layer"], "feature": first["feature"], "k": 10}
    )
    shown = page.page.inner_text("#panel .graph-dashboard")
    assert f"Feature {first['feature']} of layer {first['layer']}" in shown
    assert f"of the {dash['tokens']:,} tokens" in shown and "No label" in shown
    tops = page.page.locator("#panel .graph-dashboard table.dashboard-contexts tbody tr").all_inner_texts()
    assert len(tops) == min(5, len(dash["contexts"]))
    for row, context in zip(tops, dash["contexts"], strict=False):
        assert shows(row, "{}", context["activation"])

    page.page.fill("#graph-multiple", "0")
    page.page.click("#graph-intervene")
    page.page.wait_for_selector("#panel table.graph-intervention")
    check = server.post("graph-intervene", {"prompt": PROMPT, "transcoders": "mine", "changes": {first["id"]: 0.0}})
    rows = page.page.locator("#panel table.graph-intervention tbody tr").all_inner_texts()
    assert len(rows) == len(check["targets"])
    for row, target in zip(rows, check["targets"], strict=True):
        for route in ("graph", "frozen", "unfrozen"):
            assert shows(row, "{}", target[route], f=_signed), (route, row)
    page.page.locator("#panel .graph-canvas").scroll_into_view_if_needed()
    page.page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.page.locator(f'#panel svg .node[data-id="{second["id"]}"]').click(modifiers=["Shift"])
    page.page.click("#panel button.group-nodes")
    page.page.wait_for_selector("#panel svg .node.supernode")
    assert page.page.locator("#panel svg .node").count() == len(api["nodes"]) - 1
    assert "2 nodes" in page.page.inner_text("#panel .node-details")

    with page.page.expect_download() as info:
        page.page.click("text=Neuronpedia JSON")
    exported = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert len(exported["nodes"]) == len(api["nodes"]) and exported["metadata"]["prompt"] == PROMPT
    page.shot("graph")


def test_the_standalone_page_draws_with_the_same_module(chromium, graph_server, tmp_path):
    from glasslab.methods.graphs import attribution_graph
    from tests.graph_sets import random_transcoder_set

    _, model = graph_server
    graph = attribution_graph(model, PROMPT, random_transcoder_set(model))
    page = chromium.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(graph.save(tmp_path / "graph.html").as_uri())
    page.wait_for_selector("#canvas svg .node")
    assert page.locator("#canvas svg .node").count() == len(graph.nodes)
    shown = int(page.get_attribute("#canvas svg", "data-edges-shown"))
    page.locator("#share").fill("10")
    assert int(page.get_attribute("#canvas svg", "data-edges-shown")) < shown
    page.close()
    assert not errors, errors
