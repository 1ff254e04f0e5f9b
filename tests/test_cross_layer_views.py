"""A cross-layer transcoder's per-layer views cost no second copy of its encoders: ``transcoder(s)`` holds the
set's own encoder, threshold and biases (only the summed decoder is new), ``to()`` rebuilds the views from the
moved tensors, and graph nodes' labels are read from the set's folder without building any view."""

from __future__ import annotations

import pytest
import torch

from glasslab.dictionaries.cross_layer import CrossLayerTranscoderSet, CrossLayerWeights
from glasslab.dictionaries.labels_file import FeatureLabel, write_labels
from glasslab.dictionaries.loading import labels_of
from glasslab.dictionaries.user_labels import folder_for, sae_key
from glasslab.errors import InputError
from glasslab.methods.graphs import attribution_graph
from glasslab.methods.graphs.result import transcoder_labels
from tests.test_published_transcoders import D_SAE, clt_tensors
from tests.tiny import tiny_model
from tests.tolerance import slack

SHARED = ("W_enc", "b_enc", "b_dec", "threshold")


def clt_of(model) -> CrossLayerTranscoderSet:
    return CrossLayerTranscoderSet([CrossLayerWeights(**raw) for raw in clt_tensors(model)], model_name=model.name)


def assert_shares(view, weights: CrossLayerWeights) -> None:
    for name in SHARED:
        ours, theirs = getattr(view, name), getattr(weights, name)
        assert ours.untyped_storage().data_ptr() == theirs.untyped_storage().data_ptr(), name
        assert ours.dtype == theirs.dtype and not ours.requires_grad, name
    summed = weights.W_dec.sum(1)
    assert torch.allclose(view.W_dec, summed, atol=slack(summed), rtol=0)


def test_a_view_holds_the_sets_own_encoder_and_the_summed_decoder():
    model = tiny_model("llama")
    clt = clt_of(model)
    x = torch.randn(3, model.d_model, generator=torch.Generator().manual_seed(0))
    for layer in clt.layers:
        view = clt.transcoder(layer)
        assert_shares(view, clt._layers[layer])
        expected = clt.encode(layer, x)
        assert torch.allclose(view.encode(x), expected, atol=slack(expected), rtol=0)
        assert clt.transcoder(layer) is view  # kept


def test_to_rebuilds_the_views_from_the_moved_tensors():
    model = tiny_model("llama")
    clt = clt_of(model)
    before = clt.transcoder(0)
    clt.to(dtype=torch.float64)
    after = clt.transcoder(0)
    assert after is not before and after.W_enc.dtype == torch.float64
    assert_shares(after, clt._layers[0])
    assert before.W_enc.dtype == torch.float32  # the old view kept its own (the set's former) tensors


def test_graph_labels_are_read_from_the_folder_without_building_a_view(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    model = tiny_model("llama")
    clt = clt_of(model)
    clt.folder = tmp_path / "clt"
    for layer in clt.layers:
        (clt.folder / f"layer-{layer}").mkdir(parents=True)
        write_labels(clt.folder / f"layer-{layer}", {f: FeatureLabel(f"L{layer}F{f}", "auto") for f in range(D_SAE)})
    user = folder_for(sae_key(clt.folder / "layer-0"))  # a person's label of feature 0 of layer 0, over the file's
    user.mkdir(parents=True)
    write_labels(user, {0: FeatureLabel("mine", "user")})
    expected = {layer: labels_of(clt.transcoder(layer)) for layer in clt.layers}  # what the views give
    clt._views.clear()

    def no_view(self, layer):
        raise AssertionError(f"transcoder({layer}) built a view")

    monkeypatch.setattr(CrossLayerTranscoderSet, "transcoder", no_view)
    assert all(clt.labels(layer) == expected[layer] for layer in clt.layers)
    assert clt.labels(0)[0].label == "mine" and clt.labels(0)[1].label == "L0F1"
    graph = attribution_graph(model, "the cat sat on the mat", clt)
    features = [node for node in graph.nodes if node.kind == "feature"]
    assert features
    for node in features:
        assert node.label == expected[node.layer][node.feature].label
    write_labels(clt.folder / "layer-1", {3: FeatureLabel("a relabelled feature", "auto")})
    assert transcoder_labels(clt)(1, 3) == "a relabelled feature" and transcoder_labels(clt)(1, 2) == ""


def test_a_set_without_a_folder_has_no_labels():
    clt = clt_of(tiny_model("llama"))
    assert clt.labels(0) == {} and transcoder_labels(clt)(0, 0) == ""
    with pytest.raises(InputError, match="no layer"):
        clt.labels(clt.n_layers)
