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

Post-norm families (Gemma 2/3) normalise the MLP's output before adding it to the stream, so the layer's
share ``r`` of the wanted change of the stream is turned into a projection output by inverting the norm
exactly (postnorm.py): the input whose normalised output is closest to the current write plus ``r``. The
next layer re-measures ``h_i``, so what one layer misses (the least-squares compromise, or a change the norm
cannot make) is left to the next. ``details["per_layer"]`` records, for each layer, how much of its share
the update actually produced at the layer's own output and how much of it arrived at the last layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...errors import InputError
from ...model.model import Model
from ...model.norms import check_norm
from .edit import Edit, from_layout, projection_weight, to_layout
from .facts import Fact
from .postnorm import invert_rms_norm
from .rome import projection_output
from .stats import KeyStats, key_statistics
from .targets import Targets, context_prefixes, edit_keys, optimise_targets, site_values


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
    spread = _spread_over_layers(model, facts, layer_list, prefixes, stats, update_weight, targets)
    details = {
        "layers": layer_list,
        "update_weight": update_weight,
        "prefixes": prefixes,
        "stats": {"corpus": stats[last].corpus, "tokens": stats[last].tokens, "seq_len": stats[last].seq_len},
        **_outcome(model, layer_list, targets, spread),
        "hyperparameters": {
            "steps": steps,
            "lr": lr,
            "kl_factor": kl_factor,
            "weight_decay": weight_decay,
            "clamp": clamp,
            "seed": seed,
        },
    }
    return _edit(model, facts, layer_list, spread.deltas, spread.keys, spread.values, details)


@dataclass(frozen=True)
class _Spread:
    """The per-layer updates of one MEMIT edit and what each produced (``details["per_layer"]``)."""

    deltas: dict[int, torch.Tensor]
    keys: dict[int, torch.Tensor]
    values: dict[int, torch.Tensor]
    per_layer: list[dict]
    stream: torch.Tensor  # the last layer's stream at the subject, with every update in


def _spread_over_layers(
    model: Model,
    facts: list[Fact],
    layer_list: list[int],
    prefixes: list[str],
    stats: dict[int, KeyStats],
    update_weight: float,
    targets: Targets,
) -> _Spread:
    """Step 2 of the module doc: each layer in order takes its share of what is still missing from ``z``."""
    z = targets.values  # [n, d_model]
    last = layer_list[-1]
    deltas: dict[int, torch.Tensor] = {}
    keys: dict[int, torch.Tensor] = {}
    values: dict[int, torch.Tensor] = {}
    per_layer: list[dict] = []
    stream = targets.initial  # the last layer's stream at the subject, with the updates so far
    for i, layer in enumerate(layer_list):
        with _edit(model, facts, layer_list[:i], deltas, {}, {}, {}).applied(model):
            layer_keys = edit_keys(model, facts, layer, prefixes)  # [n, d_mlp]
            written = site_values(model, facts, layer, "proj")  # the projection's output in each plain prompt
            outputs = projection_output(model, layer, layer_keys)
        share = (z - stream) / (len(layer_list) - i)
        wanted = _wanted_output(model, layer, written, share)
        change = least_squares_update(wanted.T, layer_keys.T, stats[layer].moment, update_weight)
        if not torch.isfinite(change).all():
            raise InputError(f"the MEMIT update at layer {layer} is not finite; measure more key statistics")
        deltas[layer] = to_layout(model, change).float()
        keys[layer], values[layer] = layer_keys, outputs + wanted
        with _edit(model, facts, layer_list[: i + 1], deltas, {}, {}, {}).applied(model):
            rewritten = site_values(model, facts, layer, "proj")
            after = site_values(model, facts, last, "resid")
        produced = _stream_write(model, layer, rewritten) - _stream_write(model, layer, written)
        per_layer.append(
            {
                "layer": layer,
                "share_norm": share.norm(dim=1).tolist(),
                # Of the layer's share of the stream change: the part its update wrote at its own output, and
                # the part that arrived at the last layer (along the share's direction; 1 = all of it).
                "produced": _along(produced, share),
                "carried": _along(after - stream, share),
            }
        )
        stream = after
    return _Spread(deltas, keys, values, per_layer, stream)


def _outcome(model: Model, layer_list: list[int], targets: Targets, spread: _Spread) -> dict:
    """The finished edit's part of ``details``: weight norms, optimisation, how close the stream came to ``z``."""
    z, stream = targets.values, spread.stream
    weight_norms = {
        str(layer): float(from_layout(model, projection_weight(model, layer).detach()).double().norm())
        for layer in layer_list
    }
    wanted_shift = z - targets.initial
    return {
        "weight_norms": weight_norms,
        "optimisation": targets.summary(),
        # The finished edit's change of the last layer's stream, along the wanted change (1 = all of it), and
        # how far the stream still is from z (1 = as far as before the edit).
        "z_reached": _along(stream - targets.initial, wanted_shift),
        "z_distance": ((z - stream).norm(dim=1) / wanted_shift.norm(dim=1).clamp_min(1e-12)).tolist(),
        "per_layer": spread.per_layer,
        "post_norm_inverted": _has_post_norm(model),
    }


def _stream_write(model: Model, layer: int, output: torch.Tensor) -> torch.Tensor:
    """[n, d_model] float64: what projection outputs ``output`` add to the stream: through the post-norm, if any,
    computed from its canonical parameters in float64 (the module rounds to the model's dtype)."""
    if not _has_post_norm(model):
        return output
    params = model.weights.post_mlp_norm(layer)
    output = output.double()
    weight = params.weight.to(device=output.device, dtype=torch.float64)
    centred = output - output.mean(-1, keepdim=True) if params.centre else output
    normed = centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + params.eps) * weight
    return normed if params.bias is None else normed + params.bias.to(device=output.device, dtype=torch.float64)


def _wanted_output(model: Model, layer: int, output: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """[n, d_model]: the change of the projection's output ``output`` that moves the stream by ``share`` (itself
    without a post-norm; with one, the norm inverted exactly at the current output's size, postnorm.py)."""
    if not _has_post_norm(model):
        return share
    params = model.weights.post_mlp_norm(layer)
    # The reading must reproduce the model's own norm on these outputs, or the inversion would be of another map.
    norm = model.block_module(layer, model.arch.post_mlp_norm)
    check_norm(params, norm, output.to(device=model.device, dtype=model.dtype), "post-MLP norm")
    return invert_rms_norm(params, _stream_write(model, layer, output) + share, output) - output


def _has_post_norm(model: Model) -> bool:
    return model.arch.post_mlp_norm is not None


def _along(change: torch.Tensor, wanted: torch.Tensor) -> list[float]:
    """Per row, the component of ``change`` along ``wanted`` in units of ``wanted`` (1 = all of it)."""
    return ((change * wanted).sum(1) / (wanted * wanted).sum(1).clamp_min(1e-24)).tolist()


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
