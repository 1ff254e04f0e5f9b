"""Cross-layer transcoder features as features (issue 20 item 5) on a tiny model and a small random CLT in
circuit-tracer's layout, copied into the store: ``transcoders precompute`` on its folder writes every source
layer's labels and dashboards in ``layer-<s>/``; a feature's top activations are its encoder's, recomputed by
hand; its pushed tokens are the sum of its decoders through the unembedding; graph nodes carry the labels; the
HTTP endpoint answers for a CLT feature by its store name."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.main  # registers the commands
from glasslab.cli.app import app
from glasslab.data import load_corpus, packed_sequences
from glasslab.dictionaries.cross_layer import CrossLayerTranscoderSet, CrossLayerWeights
from glasslab.dictionaries.labels_file import read_labels
from glasslab.dictionaries.transcoder_catalog import open_transcoders
from glasslab.errors import InputError
from glasslab.methods.features.atlas import atlas_of
from glasslab.methods.features.transcoder_features import precompute_transcoders, transcoder_dashboard
from glasslab.methods.graphs import attribution_graph
from glasslab.methods.graphs.result import transcoder_labels
from glasslab.store import TRANSCODERS, location

from .test_published_transcoders import clt_tensors, write_config
from .test_server_helpers import client
from .tiny import WORDS, save_tiny

SCAN = {"sequences": 12, "seq_len": 16, "k": 5, "window": 4}
PROMPT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny model, a corpus, the CLT's raw tensors and its folder in the store (name ``clt``), precomputed
    by the command line on that folder."""
    root = tmp_path_factory.mktemp("cross-layer-features")
    rng = random.Random(1)
    lines = [json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(30))}) for _ in range(80)]
    corpus = root / "corpus.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(root / "store"))
        patch.setenv("GLASSLAB_PROGRESS", "0")
        save_tiny("llama", root / "tiny")
        model = gl.load(str(root / "tiny"))
        layers = clt_tensors(model, seed=2)
        folder = location(TRANSCODERS, model.key, "clt")
        folder.mkdir(parents=True)
        for layer, raw in enumerate(layers):
            encoder = {f"W_enc_{layer}": raw["W_enc"].T.contiguous(), f"b_enc_{layer}": raw["b_enc"]}
            encoder |= {f"b_dec_{layer}": raw["b_dec"], f"threshold_{layer}": raw["threshold"]}
            save_file(encoder, folder / f"W_enc_{layer}.safetensors")
            save_file({f"W_dec_{layer}": raw["W_dec"].contiguous()}, folder / f"W_dec_{layer}.safetensors")
        write_config(folder, "cross_layer_transcoder", "mlp.hook_in")
        args = ["transcoders", "precompute", str(folder), "--corpus", str(corpus), "--tokens", "192"]
        args += ["--held-out-tokens", "32", "--seq-len", "16", "--json", "--model", str(root / "tiny")]
        done = CliRunner().invoke(app, args, env={"GLASSLAB_PROGRESS": "0", "GLASSLAB_HOME": str(root / "store")})
        assert done.exit_code == 0, done.output
        yield model, str(corpus), layers, folder, json.loads(done.stdout)


def _brute_force(model, raw, hook, feature, corpus, sequences, seq_len, k):
    """Every sequence's maximum of the feature (BOS left out), best first: its JumpReLU encoder from the raw
    tensors, on each sequence run alone."""
    found = []
    for index, ids in enumerate(packed_sequences(model, load_corpus(corpus, split="train"), seq_len, limit=sequences)):
        act = model.run(ids[None], cache=[hook]).cache[hook][0].float()
        pre = act @ raw["W_enc"] + raw["b_enc"]
        values = (pre * (pre > raw["threshold"]))[1:, feature]
        if float(values.max()) > 0:
            found.append((float(values.max()), index, int(values.argmax()) + 1))
    return sorted(found, key=lambda item: (-item[0], item[1]))[:k]


def test_precompute_on_the_folder_writes_every_source_layers_labels_and_dashboards(setup):
    model, _, _, folder, printed = setup
    assert sorted(printed["layers"]) == [str(layer) for layer in range(model.n_layers)]
    clt = open_transcoders(str(folder), model)
    assert isinstance(clt, CrossLayerTranscoderSet) and clt.folder == folder
    for layer in clt.layers:
        atlas, labels = atlas_of(clt.transcoder(layer)), read_labels(folder / f"layer-{layer}")
        assert atlas is not None and atlas.sequences == 12 and atlas.features and set(atlas.features) <= set(labels)
        assert all(entry.source == "auto" for entry in labels.values())
    # The same CLT without a folder has nowhere to write.
    bare = CrossLayerTranscoderSet(
        [CrossLayerWeights(w.W_enc, w.b_enc, w.W_dec, w.b_dec, w.threshold) for w in clt._layers]
    )
    with pytest.raises(InputError, match="not read from a local folder"):
        precompute_transcoders(model, bare)


@pytest.mark.parametrize("layer", [0, 1])
def test_a_dashboard_reads_the_encoder_and_pushes_the_summed_decoders(setup, layer):
    model, corpus, layers, folder, _ = setup
    clt = open_transcoders(str(folder), model)
    raw, hook = layers[layer], clt.input_hook(layer)
    live = dict(corpus=corpus, split="train", precomputed=False, **SCAN)
    feature = next(f for f in atlas_of(clt.transcoder(layer)).features)
    board = transcoder_dashboard(model, clt, layer, feature, **live)
    expected = _brute_force(model, raw, hook, feature, corpus, SCAN["sequences"], SCAN["seq_len"], SCAN["k"])
    assert board.hook == hook == f"blocks.{layer}.mlp.in" and board.contexts
    assert [(c.sequence, c.position) for c in board.contexts] == [(s, p) for _, s, p in expected]
    for context, (value, _, _) in zip(board.contexts, expected, strict=True):
        assert context.activation == pytest.approx(value, rel=1e-4, abs=1e-5)
    # Pushed tokens: the decoders to every target layer, summed (the whole residual write), through the final
    # RMSNorm's weight and W_U; the sum taken here from the raw file tensors.
    effect = (raw["W_dec"][feature].sum(0) * model.weights.final_norm().weight.float()) @ model.weights.W_U().float()
    assert [t.token_id for t in board.promotes] == torch.topk(effect, len(board.promotes)).indices.tolist()
    assert [t.token_id for t in board.suppresses] == torch.topk(-effect, len(board.suppresses)).indices.tolist()
    for pushed in board.promotes:
        assert pushed.value == pytest.approx(float(effect[pushed.token_id]), rel=1e-4, abs=1e-5)
    # The precomputed dashboard (read from layer-<s>/) equals this live scan of the same text.
    stored = transcoder_dashboard(model, clt, layer, feature)
    same_text = dict(corpus=corpus, split="train", sequences=12, seq_len=16, precomputed=False)
    rescanned = transcoder_dashboard(model, clt, layer, feature, **same_text)
    assert stored.label is not None and stored.label.source == "auto"
    assert [c.tokens for c in stored.contexts] == [c.tokens for c in rescanned.contexts]
    assert stored.density == pytest.approx(rescanned.density) and stored.histogram_counts == rescanned.histogram_counts


def test_graph_nodes_carry_the_labels_and_the_http_endpoint_answers_by_store_name(setup, tmp_path):
    model, _, _, folder, _ = setup
    clt = open_transcoders("clt", model)  # the store name finds the published layout copied there
    assert isinstance(clt, CrossLayerTranscoderSet) and clt.folder == folder
    graph = attribution_graph(model, PROMPT, clt, target=" mat")
    features = [node for node in graph.nodes if node.kind == "feature"]
    lookup = transcoder_labels(clt)
    assert features and all(node.label == lookup(node.layer, node.feature) for node in features)
    assert any(node.label for node in features)
    assert {node.label for node in features} - {""} <= {
        entry.label for layer in clt.layers for entry in read_labels(folder / f"layer-{layer}").values()
    }
    layer = 1
    feature = atlas_of(clt.transcoder(layer)).features[0]
    c = client(model, tmp_path)
    answer = c.post("/api/transcoders-dashboard", json={"transcoders": "clt", "layer": layer, "feature": feature})
    assert answer.status_code == 200, answer.text
    expected = transcoder_dashboard(model, clt, layer, feature)
    data = answer.json()
    assert data["hook"] == f"blocks.{layer}.mlp.in" and data["label"]["label"] == expected.label.label
    assert [c["tokens"] for c in data["contexts"]] == [c.tokens for c in expected.contexts]
    assert [t["token_id"] for t in data["promotes"]] == [t.token_id for t in expected.promotes]
