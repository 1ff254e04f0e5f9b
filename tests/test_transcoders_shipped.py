"""The transcoder set shipped for the offline default model: it opens as ``default``, fits every layer, was
trained on English and keeps its recorded quality, labels its live features, and gives an attribution graph
of "The capital of France is" that replays the model and is mostly explained by features."""

from __future__ import annotations

import json

import pytest

from glasslab.dictionaries.labels_file import read_labels
from glasslab.dictionaries.transcoder_catalog import open_transcoders, shipped_transcoders
from glasslab.methods.graphs import attribution_graph
from glasslab.store import TRANSCODERS, verify

pytestmark = pytest.mark.slow
SHIPPED = list(shipped_transcoders())
MIN_LAYER_FVE = 0.5  # every layer's recorded fraction of the MLP output's variance explained
MIN_REPLACEMENT_SCORE = 0.8  # measured 0.89 on the prompt below


@pytest.fixture(scope="module")
def shipped_set(default_model):
    assert SHIPPED, "a transcoder set ships for the default model"
    return open_transcoders("default", default_model)


def test_the_shipped_set_is_whole_and_was_trained_on_english(default_model, shipped_set):
    _name, folder, made_for = SHIPPED[0]
    assert made_for == default_model.name
    assert shipped_set.layers == list(range(default_model.n_layers))
    verify(folder, TRANSCODERS, deep=True)  # every file as the manifest recorded it
    training = json.loads((folder / "training.json").read_text())
    assert training["config"]["corpus"] == "english"
    fves = [layer["fve"] for layer in training["evaluation"]["layers"]]
    assert len(fves) == default_model.n_layers and min(fves) > MIN_LAYER_FVE
    for layer in shipped_set.layers:
        labels = read_labels(folder / f"layer-{layer}")
        assert labels, f"layer {layer} has labels"


def test_a_graph_of_the_capital_of_france(default_model, shipped_set):
    graph = attribution_graph(default_model, "The capital of France is", shipped_set, target=" Paris")
    assert [t["label"] for t in graph.targets] == [" Paris"]
    logit = abs(graph.targets[0]["logit"])
    assert graph.replay_error <= 1e-4 * max(1.0, logit)  # the replacement reproduces the model on the prompt
    assert graph.scores.replacement > MIN_REPLACEMENT_SCORE
    features = [node for node in graph.nodes if node.kind == "feature"]
    assert features and sum(1 for node in features if node.label) >= len(features) // 2
    assert any(edge.target.startswith("l:") for edge in graph.edges)
