"""Attribution graphs against circuit-tracer's on the same weights (peer fixture, no circuit-tracer needed here).

``scripts/peers/circuit_tracer_graph.py`` ran circuit-tracer 0.5.0 (in its own environment: it pins older
transformers) on a tiny random GPT-2 with random ReLU transcoders, without and with skip connections, and saved
the model, the transcoders and circuit-tracer's graph under ``tests/data/circuit_tracer``. These tests build
glasslab's graph from the same folder and weights and compare what circuit-tracer computed: the active
features and their values, the logit targets and probabilities, every direct effect, the replacement and
completeness scores and the pruned nodes and edges.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import glasslab as gl
from glasslab.dictionaries import dictionary_class
from glasslab.dictionaries.sae_config import SAEConfig
from glasslab.dictionaries.transcoder_set import TranscoderSet
from glasslab.methods.graphs import AttributionGraph, attribution_graph
from tests.tolerance import slack

FIXTURE = Path(__file__).parent / "data" / "circuit_tracer"
VARIANTS = ["noskip", "skip"]


@cache
def peer() -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(graphs.json, circuit-tracer's tensors, the transcoders' tensors in circuit-tracer's layout)."""
    summary = json.loads((FIXTURE / "graphs.json").read_text())
    return summary, load_file(FIXTURE / "graphs.safetensors"), load_file(FIXTURE / "transcoders.safetensors")


def peer_tensor(variant: str, name: str) -> torch.Tensor:
    return peer()[1][f"{variant}.{name}"]


def transcoder_set(variant: str, n_layers: int) -> TranscoderSet:
    """circuit-tracer's per-layer transcoders as glasslab transcoders (its W_enc is [d_sae, d_in]: transposed)."""
    summary, _, weights = peer()
    skip = summary[variant]["skip"]
    architecture = "skip_transcoder" if skip else "transcoder"
    names = ["W_enc", "b_enc", "W_dec", "b_dec"] + (["W_skip"] if skip else [])
    layers = {}
    for layer in range(n_layers):
        state = {name: weights[f"{variant}.layer{layer}.{name}"] for name in names}
        state["W_enc"] = state["W_enc"].T.contiguous()  # W_skip is [d_out, d_in] in both
        d_sae, d_model = state["W_dec"].shape
        config = SAEConfig(
            architecture=architecture,
            d_in=d_model,
            d_sae=d_sae,
            hook=f"blocks.{layer}.mlp.in",
            hook_out=f"blocks.{layer}.mlp_out",
            d_out=d_model,
            apply_b_dec_to_input=False,
        )
        transcoder = dictionary_class(architecture)(config)
        transcoder.load_state_dict(state)
        layers[layer] = transcoder
    return TranscoderSet(layers, n_layers=n_layers)


@pytest.fixture(scope="module")
def model():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_PROGRESS", "0")
        yield gl.load(FIXTURE / "model")


@pytest.fixture(scope="module", params=VARIANTS)
def graphs(request, model) -> tuple[str, AttributionGraph]:
    """(variant, glasslab's graph with glasslab's default settings, which the fixture was made with)."""
    summary = peer()[0]
    settings = summary["settings"]
    graph = attribution_graph(
        model,
        summary["prompt"],
        transcoder_set(request.param, model.n_layers),
        max_logits=settings["max_n_logits"],
        logit_probability=settings["desired_logit_prob"],
        node_threshold=settings["node_threshold"],
        edge_threshold=settings["edge_threshold"],
    )
    return request.param, graph


def peer_node_ids(variant: str, n_layers: int) -> list[str]:
    """circuit-tracer's node order (features, errors by layer then position, tokens, logits) as glasslab ids."""
    n_positions = len(peer_tensor(variant, "input_tokens"))
    ids = [f"f:{layer}:{position}:{feature}" for layer, position, feature in peer_tensor(variant, "active_features")]
    ids += [f"e:{layer}:{position}" for layer in range(n_layers) for position in range(n_positions)]
    ids += [f"t:{position}" for position in range(n_positions)]
    ids += [f"l:{token}" for token in peer_tensor(variant, "logit_token_ids").tolist()]
    assert len(ids) == len(peer()[0][variant]["node_labels"])
    return ids


def in_peer_order(graph: AttributionGraph, variant: str, n_layers: int) -> torch.Tensor:
    """glasslab's adjacency with rows and columns in circuit-tracer's node order."""
    index = {node_id: i for i, node_id in enumerate(graph.all_node_ids)}
    order = torch.tensor([index[node_id] for node_id in peer_node_ids(variant, n_layers)])
    return graph.adjacency.matrix[order][:, order]


def test_the_fixture_model_loads_as_circuit_tracer_ran_it(model):
    tokens = model.to_tokens(peer()[0]["prompt"])[0]
    assert tokens.tolist() == peer_tensor("noskip", "input_tokens").tolist()
    logits = model.run(tokens[None]).logits[0, -1].float()
    expected = peer_tensor("noskip", "last_logits")
    assert float((logits - expected).abs().max()) <= slack(expected)


def test_the_same_active_features_and_targets(graphs):
    variant, graph = graphs
    adjacency = graph.adjacency
    features = torch.stack([adjacency.feature_layers, adjacency.feature_positions, adjacency.feature_ids], dim=1)
    assert features.tolist() == peer_tensor(variant, "active_features").tolist()
    values = peer_tensor(variant, "activation_values")
    assert float((adjacency.feature_values - values).abs().max()) <= slack(values)
    assert [t["token"] for t in graph.targets] == peer_tensor(variant, "logit_token_ids").tolist()
    probabilities = torch.tensor([t["probability"] for t in graph.targets])
    assert float((probabilities - peer_tensor(variant, "logit_probabilities")).abs().max()) <= 1e-5


def test_every_direct_effect_matches(graphs, model):
    variant, graph = graphs
    expected = peer_tensor(variant, "adjacency_matrix")
    actual = in_peer_order(graph, variant, model.n_layers)
    assert float((actual - expected).abs().max()) <= slack(expected)


def test_the_replacement_score_matches(graphs):
    variant, graph = graphs
    assert abs(graph.scores.replacement - peer()[0][variant]["replacement_score"]) <= 1e-5


def test_the_completeness_score_matches(graphs):
    variant, graph = graphs
    assert abs(graph.scores.completeness - peer()[0][variant]["completeness_score"]) <= 1e-5


def test_the_pruned_nodes_and_edges_match(graphs, model):
    variant, graph = graphs
    peer_ids = peer_node_ids(variant, model.n_layers)
    kept = {peer_ids[i] for i in torch.nonzero(peer_tensor(variant, "prune_node_mask")).flatten().tolist()}
    assert {node.id for node in graph.nodes} == kept
    edges = {(peer_ids[source], peer_ids[target]) for target, source in peer_tensor(variant, "prune_kept_edges")}
    assert {(edge.source, edge.target) for edge in graph.edges} == edges
