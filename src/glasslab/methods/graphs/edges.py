"""Direct effects by batched backward passes through the frozen local replacement model.

A target is a linear readout of the linearised pass: a feature's pre-activation (its encoder column read
from ``mlp.in`` at its layer and position) or a logit (an unembedding direction read from the final norm's
output at the last position). Each row of the batch carries one target's seed, so one backward pass gives
the gradients of ``batch`` targets with respect to every leaf. A source's direct effect on a target is its
value times that gradient: ``activation x d(target)/d(activation)`` for a feature, ``error . d(target)/
d(error)`` for an error node and ``embedding . d(target)/d(embedding)`` for a token. Because the pass is
linear in the leaves, a source's effects add up to the target's value less the constant terms (biases,
position embeddings), and perturbing a source by ``d`` moves each target by ``effect x d / value``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...progress import progress
from .replacement import LinearisedPass


@dataclass(frozen=True)
class Readout:
    """One target: the vector read from ``inputs[layer]`` (or from the final norm when layer is None) at position."""

    layer: int | None
    position: int
    direction: torch.Tensor  # [d]


def source_count(forward: LinearisedPass) -> int:
    """Sources in column order: every active feature (by layer), every error node (layer, position), tokens."""
    n_features = sum(f.shape[1] for f in forward.features)
    n_positions = forward.clean.n_positions
    return n_features + len(forward.errors) * n_positions + n_positions


def effects(forward: LinearisedPass, readouts: list[Readout]) -> torch.Tensor:
    """[len(readouts), n_sources] direct effects on each readout, ``forward.batch`` readouts per backward pass."""
    rows = []
    starts = range(0, len(readouts), forward.batch)
    for start in progress(starts, total=len(starts), description="direct effects", unit="batch"):
        rows.append(_effects_batch(forward, readouts[start : start + forward.batch]))
    if not rows:
        return torch.zeros(0, source_count(forward))
    return torch.cat(rows)


def _effects_batch(forward: LinearisedPass, readouts: list[Readout]) -> torch.Tensor:
    outputs, seeds = _seeds(forward, readouts)
    leaves = [f for f in forward.features if f.shape[1]] + list(forward.errors) + [forward.embed]
    grads = torch.autograd.grad(outputs, leaves, grad_outputs=seeds, retain_graph=True, allow_unused=True)
    columns = []
    for leaf, grad in zip(leaves, grads, strict=True):
        product = leaf.detach() * grad if grad is not None else torch.zeros_like(leaf)
        columns.append(product if product.dim() == 2 else product.sum(-1))  # errors, embeddings: dot products
    rows = torch.cat(columns, dim=1)[: len(readouts)].float()
    if forward.clean.first_position_constant:  # the BOS position's error terms are constants, not sources
        n_features, n_positions = sum(f.shape[1] for f in forward.features), forward.clean.n_positions
        rows[:, n_features : n_features + len(forward.errors) * n_positions : n_positions] = 0.0
    return rows


def _seeds(forward: LinearisedPass, readouts: list[Readout]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The readout tensors and, for each, the seed whose row ``b`` reads target ``b``."""
    by_tensor: dict[int | None, torch.Tensor] = {}
    for row, readout in enumerate(readouts):
        tensor = forward.final if readout.layer is None else forward.inputs[readout.layer]
        seed = by_tensor.get(readout.layer)
        if seed is None:
            seed = by_tensor[readout.layer] = torch.zeros_like(tensor)
        seed[row, readout.position] = readout.direction.to(seed.dtype)
    outputs = [forward.final if layer is None else forward.inputs[layer] for layer in by_tensor]
    return outputs, list(by_tensor.values())
