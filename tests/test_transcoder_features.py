"""Transcoder features as features (issue 20 item 5) on a tiny model and a tiny random set saved in the store:
a feature's dashboard equals a brute-force scan of the same text and its pushed tokens are its decoder row
through the unembedding; ``transcoders precompute`` writes every layer's labels and dashboards through the set's
manifest (which still verifies) and keeps a person's labels; graph nodes carry the labels (and the Neuronpedia
export's ``clerp``); the HTTP endpoint answers the Python API's dashboard."""

from __future__ import annotations

import json
import random

import pytest
import torch
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.main
from glasslab.cli.app import app
from glasslab.data import load_corpus, packed_sequences
from glasslab.dictionaries.labels_file import FeatureLabel, read_labels, write_labels
from glasslab.dictionaries.transcoder_set import TranscoderSet
from glasslab.errors import InputError
from glasslab.methods.features.atlas import atlas_of
from glasslab.methods.features.dashboard import feature_dashboards
from glasslab.methods.features.transcoder_features import precompute_transcoders, transcoder_dashboard
from glasslab.methods.graphs import attribution_graph
from glasslab.methods.graphs.export import to_neuronpedia
from glasslab.methods.graphs.result import transcoder_labels
from glasslab.store import TRANSCODERS, location, verify

from .graph_sets import random_transcoder_set
from .test_server_helpers import client
from .tiny import WORDS, save_tiny, tiny_model

SCAN = {"sequences": 12, "seq_len": 16, "k": 5, "window": 4}
PROMPT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("transcoder-features")
    rng = random.Random(0)
    lines = [json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(30))}) for _ in range(80)]
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(root / "store"))
        patch.setenv("GLASSLAB_PROGRESS", "0")
        model = tiny_model("llama")
        random_transcoder_set(model).save("mine", model.key)
        yield model, str(root / "corpus.jsonl"), root


def _brute_force(model, transcoder, feature, corpus, sequences, seq_len, k):
    """Every sequence's maximum of the feature (BOS left out), best first, by running each sequence alone."""
    found = []
    for index, ids in enumerate(packed_sequences(model, load_corpus(corpus, split="train"), seq_len, limit=sequences)):
        act = model.run(ids[None], cache=[transcoder.hook]).cache[transcoder.hook][0]
        values = (act.float() @ transcoder.W_enc + transcoder.b_enc).relu()[1:, feature]
        if float(values.max()) > 0:
            found.append((float(values.max()), index, int(values.argmax()) + 1))
    return sorted(found, key=lambda item: (-item[0], item[1]))[:k]


def test_a_dashboard_equals_a_brute_force_scan_and_pushes_its_decoder_row(setup):
    model, corpus, _ = setup
    transcoders = TranscoderSet.load("mine", model)
    layer = 1
    transcoder = transcoders[layer]
    scanned = feature_dashboards(model, transcoder, corpus=corpus, split="train", precomputed=False, **SCAN)
    feature = next(board.feature for board in scanned if board.contexts)
    board = transcoder_dashboard(
        model, transcoders, layer, feature, corpus=corpus, split="train", precomputed=False, **SCAN
    )
    expected = _brute_force(model, transcoder, feature, corpus, SCAN["sequences"], SCAN["seq_len"], SCAN["k"])
    assert board.hook == f"blocks.{layer}.mlp.in" and board.contexts
    assert [(c.sequence, c.position) for c in board.contexts] == [(s, p) for _, s, p in expected]
    for context, (value, _, _) in zip(board.contexts, expected, strict=True):
        assert context.activation == pytest.approx(value, rel=1e-4, abs=1e-5)
    # Pushed tokens: the decoder row (a residual write: mlp_out) through the final RMSNorm's weight and W_U.
    effect = (
        transcoder.W_dec[feature].float() * model.weights.final_norm().weight.float()
    ) @ model.weights.W_U().float()
    assert [t.token_id for t in board.promotes] == torch.topk(effect, len(board.promotes)).indices.tolist()
    assert [t.token_id for t in board.suppresses] == torch.topk(-effect, len(board.suppresses)).indices.tolist()
    with pytest.raises(InputError, match="out of range for this transcoder"):
        transcoder_dashboard(model, transcoders, layer, transcoder.d_sae)
    with pytest.raises(InputError, match="no layer 9"):
        TranscoderSet.load("mine", model, layers=[9])


def test_precompute_writes_labels_and_dashboards_the_manifest_verifies_and_graph_nodes_carry_labels(setup):
    model, corpus, _ = setup
    folder = location(TRANSCODERS, model.key, "mine")
    write_labels(folder / "layer-0", {2: FeatureLabel("my reading", "user")})  # outside the manifest, kept
    transcoders = TranscoderSet.load("mine", model)
    result = precompute_transcoders(model, transcoders, corpus=corpus, tokens=12 * 16, held_out_tokens=32, seq_len=16)
    assert sorted(result.layers) == transcoders.layers and "train split" in result.corpus
    manifest = verify(folder, TRANSCODERS, deep=True)
    assert {"layer-0/labels.json", "layer-0/dashboards.safetensors"} <= set(manifest["files"])
    assert read_labels(folder / "layer-0")[2].label == "my reading"
    reloaded = TranscoderSet.load("mine", model)
    for layer in reloaded.layers:
        atlas = atlas_of(reloaded[layer])
        labels = read_labels(folder / f"layer-{layer}")
        assert atlas is not None and atlas.sequences == 12 and set(atlas.features) <= set(labels)
        assert all(labels[f].source == "auto" for f in atlas.features if f != 2 or layer != 0)
    # A dashboard read from the atlas equals a live scan of the same text.
    layer, feature = 1, atlas_of(reloaded[1]).features[0]
    stored = transcoder_dashboard(model, reloaded, layer, feature)
    live = transcoder_dashboard(
        model, reloaded, layer, feature, corpus=corpus, split="train", sequences=12, seq_len=16, precomputed=False
    )
    assert stored.label is not None and stored.label.source == "auto"
    assert [c.tokens for c in stored.contexts] == [c.tokens for c in live.contexts]
    assert stored.density == live.density and stored.histogram_counts == live.histogram_counts
    # Graph nodes carry the labels and so does clerp.
    graph = attribution_graph(model, PROMPT, reloaded, target=" mat")
    features = [n for n in graph.nodes if n.kind == "feature"]
    assert features
    lookup = transcoder_labels(reloaded)
    for node in features:
        assert node.label == lookup(node.layer, node.feature)
    assert any(node.label for node in features)
    clerps = {n["node_id"]: n["clerp"] for n in to_neuronpedia(graph)["nodes"]}
    for node in features:
        assert clerps[f"{node.layer}_{node.feature}_{node.position}"] == node.label


def test_the_cli_precomputes_and_the_http_endpoint_answers_the_python_dashboard(setup):
    _, corpus, root = setup
    save_tiny("llama", root / "tiny")
    model = gl.load(str(root / "tiny"))
    random_transcoder_set(model, seed=3).save("cli", model.key)
    env = {"GLASSLAB_PROGRESS": "0", "GLASSLAB_HOME": str(root / "store")}
    args = ["transcoders", "precompute", "cli", "--corpus", corpus, "--tokens", "96", "--held-out-tokens", "32"]
    args += ["--seq-len", "16", "--layers", "0", "--json", "--model", str(root / "tiny")]
    done = CliRunner().invoke(app, args, env=env)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["layers"].keys() == {"0"}
    loaded = TranscoderSet.load("cli", model)
    feature = atlas_of(loaded[0]).features[0]
    shown = CliRunner().invoke(
        app, ["transcoders", "feature", "cli", "0", str(feature), "--model", str(root / "tiny")], env=env
    )
    assert shown.exit_code == 0 and f"feature {feature} of cli layer 0" in shown.output, shown.output
    c = client(model, root / "store")
    answer = c.post("/api/transcoders-dashboard", json={"transcoders": "cli", "layer": 0, "feature": feature})
    assert answer.status_code == 200, answer.text
    expected = transcoder_dashboard(model, loaded, 0, feature)
    data = answer.json()
    assert data["kind"] == "sae_feature_dashboard" and data["label"]["label"] == expected.label.label
    assert [c["tokens"] for c in data["contexts"]] == [c.tokens for c in expected.contexts]
    refused = c.post("/api/transcoders-dashboard", json={"transcoders": "/tmp/x", "layer": 0, "feature": 0})
    assert refused.status_code == 422
