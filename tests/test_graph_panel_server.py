"""The endpoints behind the workbench's attribution-graph panel, on a tiny model with random transcoders saved in
a temporary store: ``transcoder-sets`` lists the store's sets, ``graph-intervene`` answers the Python API's
intervention on the graph (built once: the graph drawn is the one intervened on), ``graph-neuronpedia`` answers
the export, and bad input is one line with the right status; ``glasslab graph-intervene`` prints the same."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import glasslab.operations.graphs as graph_operations
from glasslab.app.ops import finite
from glasslab.cli.main import app
from glasslab.dictionaries.transcoder_set import TranscoderSet
from glasslab.methods.graphs import attribution_graph
from glasslab.methods.graphs.export import to_neuronpedia
from glasslab.methods.graphs.intervene import intervene_on_graph

from .graph_sets import random_transcoder_set
from .test_server_helpers import client
from .tiny import save_tiny, tiny_model

PROMPT = "the cat sat on the mat"
BODY = {"prompt": PROMPT, "transcoders": "mine", "target": " mat"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(home))
        model = tiny_model("llama")
        random_transcoder_set(model).save("mine", model.key)
        transcoders = TranscoderSet.load("mine", model)
        graph = attribution_graph(model, PROMPT, transcoders, target=" mat", transcoders_name="mine")
        yield model, client(model, home), graph, transcoders


def _json(value) -> dict:
    return json.loads(json.dumps(finite(value)))


def test_the_store_s_sets_are_listed(setup):
    _, c, _, _ = setup
    answer = c.post("/api/transcoder-sets", json={})
    assert answer.status_code == 200, answer.text
    (entry,) = answer.json()["sets"]
    assert entry["name"] == "mine" and entry["summary"] == {"architecture": "transcoder", "layers": 3, "d_sae": 24}


def test_an_intervention_answers_the_python_api_on_the_graph_drawn(setup, monkeypatch):
    model, c, _, transcoders = setup
    built = []
    original = graph_operations.attribution_graph
    monkeypatch.setattr(graph_operations, "attribution_graph", lambda *a, **k: built.append(1) or original(*a, **k))
    body = {**BODY, "max_feature_nodes": 64}  # a graph no other test built: counted from its first request
    drawn = c.post("/api/graph", json=body).json()
    feature = next(n["id"] for n in drawn["nodes"] if n["kind"] == "feature")
    answer = c.post("/api/graph-intervene", json={**body, "changes": {feature: 0.0}})
    assert answer.status_code == 200, answer.text
    assert len(built) == 1  # the graph drawn is the graph intervened on, not built a second time
    local = attribution_graph(model, PROMPT, transcoders, target=" mat", max_feature_nodes=64)
    expected = _json(intervene_on_graph(model, local, transcoders, {feature: 0.0}).to_dict())
    data = answer.json()
    assert data["changes"] == {feature: 0.0}
    for got, want in zip(data["targets"], expected["targets"], strict=True):
        assert got["label"] == want["label"]
        assert [got[k] for k in ("graph", "frozen", "unfrozen")] == pytest.approx(
            [want[k] for k in ("graph", "frozen", "unfrozen")], rel=1e-4, abs=1e-5
        )


def test_the_neuronpedia_export_is_the_python_api_s(setup):
    _, c, graph, _ = setup
    answer = c.post("/api/graph-neuronpedia", json=BODY)
    assert answer.status_code == 200, answer.text
    expected = _json(to_neuronpedia(graph))
    data = answer.json()
    assert data["metadata"] == expected["metadata"]
    assert [n["node_id"] for n in data["nodes"]] == [n["node_id"] for n in expected["nodes"]]
    assert len(data["links"]) == len(expected["links"])


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({**BODY, "changes": {"f:9:9:9": 0.0}}, 400, "'f:9:9:9' is not a feature node of this graph"),
        (BODY, 400, "give at least one feature node to change"),
        ({**BODY, "transcoders": "other", "changes": {"f:0:1:1": 0.0}}, 404, "no transcoder set 'other'"),
        ({**BODY, "transcoders": "/tmp/mine", "changes": {"f:0:1:1": 0.0}}, 422, "transcoders"),
    ],
)
def test_bad_interventions_are_one_line(setup, body, status, words):
    _, c, _, _ = setup
    answer = c.post("/api/graph-intervene", json=body)
    assert answer.status_code == status and words in answer.json()["error"]
    assert "\n" not in answer.json()["error"]


def test_the_command_prints_the_three_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_tiny("gpt2", tmp_path / "model")
    from glasslab import load

    model = load(tmp_path / "model")
    random_transcoder_set(model).save(tmp_path / "set", model.key)
    graph = attribution_graph(model, PROMPT, TranscoderSet.load(tmp_path / "set", model), target=" mat")
    feature = next(n.id for n in graph.nodes if n.kind == "feature")
    args = ["graph-intervene", PROMPT, "--model", str(tmp_path / "model"), "-t", str(tmp_path / "set")]
    result = CliRunner().invoke(app, [*args, "--target", " mat", "--change", f"{feature}=0", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["changes"] == {feature: 0.0} and set(data["targets"][0]) == {"label", "graph", "frozen", "unfrozen"}
    bad = CliRunner().invoke(app, [*args, "--change", "f:0:1:1"])
    assert bad.exit_code == 2 and "--change takes NODE=VALUE pairs" in bad.output


def test_a_shipped_set_is_listed_first_and_draws(setup, tmp_path, monkeypatch):
    """A set shipped for the model (here a tiny one, put where shipped sets live) is listed by the name a request
    gives it, with its kind, layers and width, and a graph is drawn through it by that name."""
    from glasslab.dictionaries import transcoder_catalog

    model, c, _, _ = setup
    shipped = random_transcoder_set(model)
    shipped.model_name = model.name  # what a shipped set records, and how it is matched to the model
    shipped.save(tmp_path / "tiny-set", model.key)
    monkeypatch.setattr(transcoder_catalog, "SHIPPED_TRANSCODERS", tmp_path)
    listed = c.post("/api/transcoder-sets", json={}).json()["sets"]
    assert [entry["name"] for entry in listed] == ["default:tiny-set", "mine"]
    assert listed[0]["summary"] == {"shipped": True, "architecture": "transcoder", "layers": 3, "d_sae": 24}
    for name in ("default", "default:tiny-set"):
        drawn = c.post("/api/graph", json={**BODY, "transcoders": name})
        assert drawn.status_code == 200, drawn.text
        assert drawn.json()["kind"] == "attribution_graph"
    missing = c.post("/api/graph", json={**BODY, "transcoders": "default:other"})
    assert missing.status_code == 400 and "no transcoder set 'other' is shipped" in missing.text
