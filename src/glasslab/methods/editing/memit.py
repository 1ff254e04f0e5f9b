"""MEMIT (Meng et al. 2023, arXiv:2210.07229): rewrite many facts at once, spread over several MLPs.

For facts ``i`` and critical layers ``R = [l_1 .. l_m]``:

1. ``z_i``: the residual stream after the last critical layer (``blocks.l_m.resid_post``) at the subject's
   last token, plus a delta optimised as in ROME (targets.py) so the new target becomes likely.
2. For each layer ``l`` in order, with the earlier layers' updates already in the model: the keys ``K``
   (``[d_mlp, n]``, averaged over prefixes as in ROME), the residual still missing ``z_i - h_i`` (``h_i``
   measured now) divided by the number of layers left, and the update minimising
   ``||dW K - R||^2 + lambda tr(dW C dW^T)``, whose closed form is

       dW = R K^T (lambda C + K K^T)^-1

   with ``C = E[k k^T]`` the layer's key statistics and ``lambda`` MEMIT's ``mom2_update_weight``.

Post-norm families (Gemma 2/3) normalise the MLP's output before adding it to the stream, so the wanted
change of the stream, ``r``, is turned into a change of the projection's output by the norm's linear map
with its scale frozen at the current output (``r / (g * s)``, the same linearisation as norms.py), leaving out
dimensions whose gain is near zero (they would need an unbounded change). The next layer re-measures ``h_i``,
so what the linearisation misses at one layer is made up at the next; the edit's details report how close
the last layer gets to ``z``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...errors import InputError
from ...model.model import Model
from ...model.norms import norm_params
from .edit import Edit, from_layout, projection_weight, to_layout
from .facts import Fact
from .rome import projection_output
from .stats import KeyStats, key_statistics
from .targets import context_prefixes, edit_keys, optimise_targets, site_values

_MIN_GAIN = 0.01  # post-norm dimensions with |gain| below this share of the median gain are not targeted


def default_layers(n_layers: int) -> list[int]:
    """MEMIT's critical layers for GPT-J (3..8 of 28) scaled to this depth."""
    low, high = round(3 * n_layers / 28), round(8 * n_layers / 28)
    return list(range(low, max(low, high) + 1))


def least_squares_update(
    residuals: torch.Tensor, keys: torch.Tensor, moment: torch.Tensor, weight: float
) -> torch.Tensor:
    """``[d_out, d_in]`` ``dW = R K^T (weight C + K K^T)^-1`` for residuals ``R [d_out, n]``, keys ``K [d_in, n]``."""
    residuals, keys, moment = residuals.double(), keys.double(), moment.double()
    system = weight * moment + keys @ keys.T
    try:
        return torch.linalg.solve(system, keys @ residuals.T).T
    except torch.linalg.LinAlgError:
        raise InputError(
            "MEMIT's system is singular at this layer; measure the key statistics over more tokens"
        ) from None


def memit(
    model: Model,
    facts: Sequence[Fact],
    *,
    layers: Sequence[int] | None = None,
    stats: dict[int, KeyStats] | None = None,
    corpus: str = "builtin",
    stats_tokens: int = 50_000,
    prefixes: Sequence[str] | None = None,
    n_prefixes: int = 5,
    update_weight: float = 15_000.0,
    steps: int = 20,
    lr: float = 0.5,
    kl_factor: float = 0.0625,
    weight_decay: float = 0.5,
    clamp: float = 4.0,
    seed: int = 0,
) -> Edit:
    """A MEMIT edit of all ``facts`` over ``layers`` (default: GPT-J's 3..8 of 28, scaled); the model is left
    unchanged. ``update_weight`` is MEMIT's lambda (how strongly ordinary keys are protected)."""
    facts = list(facts)
    if not facts or not all(isinstance(f, Fact) for f in facts):
        raise InputError("memit() takes a non-empty list of Facts")
    subjects = [f.subject for f in facts]
    if len(set(subjects)) != len(subjects):
        raise InputError("each fact in one MEMIT edit needs its own subject (two facts share a subject)")
    if not update_weight > 0:
        raise InputError(f"update_weight must be positive, got {update_weight}")
    layer_list = default_layers(model.n_layers) if layers is None else sorted({int(layer) for layer in layers})
    if not layer_list or any(not 0 <= layer < model.n_layers for layer in layer_list):
        raise InputError(f"layers must be in 0..{model.n_layers - 1}, got {list(layers or [])}")
    if stats is None:
        stats = key_statistics(model, layer_list, corpus=corpus, tokens=stats_tokens)
    for layer in layer_list:
        if layer not in stats or stats[layer].key != model.key:
            raise InputError(f"no key statistics of {model.key} for layer {layer}")
    prefixes = list(prefixes) if prefixes is not None else context_prefixes(model, n_prefixes, seed=seed)
    last = layer_list[-1]
    targets = optimise_targets(
        model,
        facts,
        prefixes,
        layer=last,
        site="resid",
        steps=steps,
        lr=lr,
        kl_factor=kl_factor,
        weight_decay=weight_decay,
        clamp=clamp,
    )
    z = targets.values  # [n, d_model]
    deltas: dict[int, torch.Tensor] = {}
    keys: dict[int, torch.Tensor] = {}
    values: dict[int, torch.Tensor] = {}
    for i, layer in enumerate(layer_list):
        partial = _edit(model, facts, layer_list[:i], deltas, {}, {}, {})
        with partial.applied(model):
            layer_keys = edit_keys(model, facts, layer, prefixes)  # [n, d_mlp]
            missing = (z - site_values(model, facts, last, "resid")) / (len(layer_list) - i)
            wanted = _through_post_norm(model, facts, layer, missing)
            outputs = projection_output(model, layer, layer_keys)
        change = least_squares_update(wanted.T, layer_keys.T, stats[layer].moment, update_weight)
        if not torch.isfinite(change).all():
            raise InputError(f"the MEMIT update at layer {layer} is not finite; measure more key statistics")
        deltas[layer] = to_layout(model, change).float()
        keys[layer], values[layer] = layer_keys, outputs + wanted
    weight_norms = {
        str(layer): float(from_layout(model, projection_weight(model, layer).detach()).double().norm())
        for layer in layer_list
    }
    edit = _edit(model, facts, layer_list, deltas, keys, values, {})
    with edit.applied(model):
        reached = site_values(model, facts, last, "resid")
    wanted_shift = (z - targets.initial).norm(dim=1)
    details = {
        "layers": layer_list,
        "update_weight": update_weight,
        "prefixes": prefixes,
        "stats": {"corpus": stats[last].corpus, "tokens": stats[last].tokens, "seq_len": stats[last].seq_len},
        "weight_norms": weight_norms,
        "optimisation": targets.summary(),
        # How much of the wanted change of the stream after the last layer the edit achieves (1 = all of it).
        "z_reached": (1 - (z - reached).norm(dim=1) / wanted_shift.clamp_min(1e-12)).tolist(),
        "post_norm_linearised": model.arch.post_mlp_norm is not None,
        "hyperparameters": {
            "steps": steps,
            "lr": lr,
            "kl_factor": kl_factor,
            "weight_decay": weight_decay,
            "clamp": clamp,
            "seed": seed,
        },
    }
    return _edit(model, facts, layer_list, deltas, keys, values, details)


def _through_post_norm(model: Model, facts: Sequence[Fact], layer: int, change: torch.Tensor) -> torch.Tensor:
    """[n, d_model]: the projection-output change that moves the stream by ``change`` (identity without a
    post-norm; with one, its linear map at the frozen scale of each fact's current output, inverted)."""
    if model.arch.post_mlp_norm is None:
        return change
    params = norm_params(model.block_module(layer, model.arch.post_mlp_norm))
    output = site_values(model, facts, layer, "proj")  # [n, d_model], the projection's current output
    scale = params.scale(output).double()  # [n]
    gain = params.weight.double().cpu()
    if params.centre:
        raise InputError("MEMIT through a LayerNorm post-norm is not supported; only RMSNorm post-norms")
    # A dimension whose gain is near zero cannot be moved by this MLP at any sane cost: leave it to other layers.
    reachable = gain.abs() >= _MIN_GAIN * gain.abs().median()
    safe = torch.where(reachable, gain, torch.ones_like(gain))
    return torch.where(reachable[None, :], change / (safe[None, :] * scale[:, None]), torch.zeros_like(change))


def _edit(model, facts, layers, deltas, keys, values, details) -> Edit:
    return Edit(
        model=model.name,
        key=model.key,
        method="memit",
        facts=tuple(facts),
        layers=tuple(layers),
        deltas=dict(deltas),
        details=details,
        keys=dict(keys),
        values=dict(values),
    )
