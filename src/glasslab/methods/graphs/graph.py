"""``attribution_graph``: from a prompt and a set of transcoders to a pruned graph of direct effects.

The steps (Ameisen et al. 2025): run the prompt and encode every MLP input with its transcoder
(``replacement.clean_pass``); choose the targets (the top logits up to a cumulative probability, a chosen
token, or a contrast between two tokens); run the frozen local replacement model on a batch of copies of
the prompt and read direct effects with batched backward passes (``edges``); assemble the adjacency
(``build``); prune by influence and score it (``influence``).
"""

from __future__ import annotations

import torch

from ...errors import InputError
from ...model.model import Model
from .build import Adjacency, LogitTarget, build_adjacency
from .influence import node_influence, prune, scores
from .replacement import CleanPass, LinearisedPass, Transcoders, check_transcoders, clean_pass
from .result import AttributionGraph, make_result, transcoder_labels


def attribution_graph(
    model: Model,
    prompt: str,
    transcoders: Transcoders,
    *,
    target: str | None = None,
    contrast: str | None = None,
    max_logits: int = 10,
    logit_probability: float = 0.95,
    max_feature_nodes: int = 4096,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
    batch_size: int = 64,
    transcoders_name: str | None = None,
) -> AttributionGraph:
    """The attribution graph of ``prompt``'s next token through ``transcoders`` (one per layer of ``model``).

    Targets: ``target`` (one token, e.g. " Paris"), or the top logits up to ``max_logits`` whose
    probabilities add up to ``logit_probability``; ``contrast`` (a second token) makes the target the
    logit difference ``target - contrast``. Nodes: the features active on the prompt (at most
    ``max_feature_nodes``, the most influential first), one error node per layer and position, one node
    per token, the targets. Pruning keeps the features that carry ``node_threshold`` of the influence on
    the targets and the edges that carry ``edge_threshold`` of it.
    """
    _check_options(max_logits, logit_probability, max_feature_nodes, node_threshold, edge_threshold, batch_size)
    check_transcoders(model, transcoders)
    tokens = model.to_tokens(prompt)[0]
    clean = clean_pass(model, tokens, transcoders)
    targets = choose_targets(model, clean, target, contrast, max_logits, logit_probability)
    forward = LinearisedPass(model, clean, transcoders, batch_size)
    replayed = forward.logits(torch.stack([t.direction for t in targets], dim=1))[0].detach().float()
    encoders = [transcoders.encoder(layer)[0].float() for layer in range(model.n_layers)]
    adjacency = build_adjacency(forward, targets, encoders, max_feature_nodes)
    depth = model.n_layers + 2
    weights = _target_weights(adjacency, targets)
    kinds = adjacency.kinds()
    is_feature = torch.tensor([k == "feature" for k in kinds])
    is_error = torch.tensor([k == "error" for k in kinds])
    is_token = torch.tensor([k == "token" for k in kinds])
    pruned = prune(adjacency.matrix, weights, is_feature, is_error, depth, node_threshold, edge_threshold)
    kept = adjacency.matrix * pruned.edges
    return make_result(
        model,
        prompt,
        tokens,
        targets,
        adjacency,
        pruned,
        influence=node_influence(adjacency.matrix, weights, depth),
        full_scores=scores(adjacency.matrix, weights, is_error, is_token, depth),
        pruned_scores=scores(kept, weights, is_error, is_token, depth),
        labels=transcoder_labels(transcoders),
        clean=clean,
        error_norms=torch.stack([error.norm(dim=-1) for error in clean.errors]),
        replay_error=float((replayed - torch.tensor([t.logit for t in targets])).abs().max()),
        settings={
            "node_threshold": node_threshold,
            "edge_threshold": edge_threshold,
            "max_feature_nodes": max_feature_nodes,
            "transcoders": transcoders_name,
        },
    )


def choose_targets(
    model: Model,
    clean: CleanPass,
    target: str | None,
    contrast: str | None,
    max_logits: int,
    logit_probability: float,
) -> list[LogitTarget]:
    """The graph's targets, each a direction in the final norm's output space: a token's unembedding less the
    mean over the vocabulary (a logit relative to the mean logit, which the softmax cannot tell from the logit
    itself), bias left out."""
    unembed = model.weights.W_U().detach().float()
    unembed = unembed - unembed.mean(dim=1, keepdim=True)
    probabilities = torch.softmax(clean.last_logits, dim=-1)
    if contrast is not None and target is None:
        raise InputError("--contrast needs --target: the graph explains target minus contrast")
    if target is not None:
        token = _single_token(model, target, "target")
        direction, label = unembed[:, token], model.to_str_tokens(torch.tensor([token]))[0]
        if contrast is not None:
            other = _single_token(model, contrast, "contrast")
            direction = direction - unembed[:, other]
            label = f"{label} - {model.to_str_tokens(torch.tensor([other]))[0]}"
        value = float(clean.last_final @ direction)
        probability = 0.0 if contrast is not None else float(probabilities[token])
        return [LogitTarget(label, token, direction, 1.0, probability, value)]
    order = torch.argsort(probabilities, descending=True)[:max_logits]
    cumulative = torch.cumsum(probabilities[order], 0)
    count = min(int((cumulative < logit_probability).sum()) + 1, len(order))
    chosen = order[:count].tolist()
    total = float(probabilities[chosen].sum())
    names = model.to_str_tokens(torch.tensor(chosen))
    return [
        LogitTarget(
            name,
            t,
            unembed[:, t],
            float(probabilities[t]) / total,
            float(probabilities[t]),
            float(clean.last_final @ unembed[:, t]),
        )
        for name, t in zip(names, chosen, strict=True)
    ]


def _single_token(model: Model, text: str, what: str) -> int:
    ids = model.to_tokens(text, prepend_bos=False)[0].tolist()
    if len(ids) != 1:
        raise InputError(f"the {what} '{text}' is {len(ids)} tokens; give one token (often with a leading space)")
    return int(ids[0])


def _target_weights(adjacency: Adjacency, targets: list[LogitTarget]) -> torch.Tensor:
    weights = torch.zeros(adjacency.matrix.shape[0])
    weights[-len(targets) :] = torch.tensor([t.weight for t in targets])
    return weights


def _check_options(max_logits, logit_probability, max_feature_nodes, node_threshold, edge_threshold, batch_size):
    for name, value in (
        ("max_logits", max_logits),
        ("max_feature_nodes", max_feature_nodes),
        ("batch_size", batch_size),
    ):
        if value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")
    for name, value in (
        ("logit_probability", logit_probability),
        ("node_threshold", node_threshold),
        ("edge_threshold", edge_threshold),
    ):
        if not 0.0 < value <= 1.0:
            raise InputError(f"{name} must be in (0, 1], got {value}")
