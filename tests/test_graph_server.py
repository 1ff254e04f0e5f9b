"""``POST /api/graph`` on a tiny model: the endpoint answers the Python API's graph for a transcoder set named
in the store, refuses a folder path (422: a request never names a file on the server) and an unknown name
(404), and a set saved again under the same name is not answered from the cache."""

from __future__ import annotations

import json

import pytest

from glasslab.app.ops import finite
from glasslab.dictionaries.transcoder_set import TranscoderSet
from glasslab.methods.graphs import attribution_graph

from .graph_sets import random_transcoder_set
from .test_server_helpers import client
from .tiny import tiny_model

PROMPT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(home))
        model = tiny_model("llama")
        random_transcoder_set(model).save("mine", model.key)
        yield model, client(model, home)


def test_the_endpoint_answers_the_python_apis_graph(setup):
    model, c = setup
    answer = c.post("/api/graph", json={"prompt": PROMPT, "transcoders": "mine", "target": " mat"})
    assert answer.status_code == 200, answer.text
    graph = attribution_graph(model, PROMPT, TranscoderSet.load("mine", model), target=" mat", transcoders_name="mine")
    expected = json.loads(json.dumps(finite(graph.to_dict())))
    data = answer.json()
    assert [n["id"] for n in data["nodes"]] == [n["id"] for n in expected["nodes"]]
    assert data["scores"] == pytest.approx(expected["scores"], rel=1e-5)
    assert data["settings"]["transcoders"] == "mine"


def test_a_path_or_an_unknown_name_is_refused(setup):
    _, c = setup
    path = c.post("/api/graph", json={"prompt": PROMPT, "transcoders": "/tmp/mine"})
    assert path.status_code == 422 and "transcoders" in path.json()["error"]
    unknown = c.post("/api/graph", json={"prompt": PROMPT, "transcoders": "other"})
    assert unknown.status_code == 404 and "no transcoder set 'other'" in unknown.json()["error"]
    local = c.post("/api/graph", json={"prompt": PROMPT, "transcoders": "mine", "neuronpedia": "x.json"})
    assert local.status_code == 422  # writing files is the local faces' option


def test_a_set_saved_again_is_not_answered_from_the_cache(setup):
    model, c = setup
    body = {"prompt": PROMPT, "transcoders": "again", "target": " mat"}
    random_transcoder_set(model, seed=1).save("again", model.key)
    first = c.post("/api/graph", json=body).json()
    random_transcoder_set(model, seed=2).save("again", model.key)
    second = c.post("/api/graph", json=body).json()
    assert first["n_active_features"] != second["n_active_features"] or first["edges"] != second["edges"]
