"""ROME (Meng et al. 2022, arXiv:2202.05262): rewrite one fact with a rank-one change of one MLP.

The MLP output projection ``W`` of layer L is read as a key-value memory: the key ``k`` (its input at the
subject's last token) selects the value ``W k`` it writes. ROME picks

- ``k*``: the subject's key, averaged over the edit prompt behind a few prefixes the model wrote itself;
- ``v*``: ``W k* + delta``, with ``delta`` optimised so the new target becomes likely when it is added to
  the projection's output at the subject's last token (targets.py; before any post-norm, as Gemma has);

and changes ``W`` by the smallest update, in the metric of the keys' second moment ``C = E[k k^T]``
(stats.py), that maps ``k*`` to ``v*``:

    W' = W + (v* - W k*) (C^-1 k*)^T / (k*^T C^-1 k*)

so ``W' k* = v*`` exactly, and a key ``k`` with ``k^T C^-1 k* = 0`` gets the same output as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...errors import InputError
from ...model.model import Model
from .edit import Edit, from_layout, projection_weight, to_layout
from .facts import Fact
from .stats import KeyStats, key_statistics
from .targets import context_prefixes, edit_keys, optimise_targets
from .tracing import traced_layer


def rank_one_update(moment: torch.Tensor, key: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """``[d_model, d_mlp]`` change ``residual (C^-1 k)^T / (k^T C^-1 k)`` (float64), so ``change @ k = residual``."""
    moment, key, residual = moment.double(), key.double(), residual.double()
    try:
        direction = torch.linalg.solve(moment, key)
    except torch.linalg.LinAlgError:
        raise InputError(
            "the key statistics are singular at this layer; measure them over more tokens (--stats-tokens)"
        ) from None
    denominator = float(key @ direction)
    if not denominator > 0:
        raise InputError(
            "the subject's key is degenerate under the key statistics (k^T C^-1 k <= 0); try another layer"
        )
    return torch.outer(residual, direction) / denominator


def projection_output(model: Model, layer: int, keys: torch.Tensor) -> torch.Tensor:
    """The MLP output projection applied to keys (``keys @ W_out + b_out``, in the model's dtype as the module
    computes it), float64."""
    with torch.inference_mode():
        keys = keys.to(device=model.device, dtype=model.dtype)
        output = torch.nn.functional.linear(keys, model.weights.W_out(layer).T, model.weights.get("b_out", layer))
        return output.double().cpu()


def rome(
    model: Model,
    fact: Fact,
    *,
    layer: int | None = None,
    stats: KeyStats | None = None,
    corpus: str = "builtin",
    stats_tokens: int = 50_000,
    prefixes: Sequence[str] | None = None,
    n_prefixes: int = 5,
    steps: int = 20,
    lr: float = 0.5,
    kl_factor: float = 0.0625,
    weight_decay: float = 0.5,
    clamp: float = 4.0,
    seed: int = 0,
) -> Edit:
    """A ROME edit making ``fact.text`` continue with ``fact.target_new``; the model is left unchanged.

    ``layer``: the MLP to edit (default: the layer whose MLP output, restored at a subject token, brings the
    answer back most in a causal trace). ``stats``: the layer's key statistics (default: measured over
    ``stats_tokens`` tokens of ``corpus``, cached in the store). ``prefixes``: the texts put before the prompt
    (default: ``n_prefixes`` the model writes, seeded by ``seed``). The rest are ROME's optimisation settings.
    """
    if not isinstance(fact, Fact):
        raise InputError("rome() takes one Fact (glasslab.Fact(subject, prompt, target_true, target_new))")
    if layer is None:
        layer = traced_layer(model, fact, seed=seed)
    weight = projection_weight(model, layer)  # validates the layer
    if stats is None:
        stats = key_statistics(model, layer, corpus=corpus, tokens=stats_tokens)[layer]
    elif stats.key != model.key or stats.layer != layer:
        raise InputError(f"the key statistics are for {stats.key} layer {stats.layer}, not {model.key} layer {layer}")
    prefixes = list(prefixes) if prefixes is not None else context_prefixes(model, n_prefixes, seed=seed)
    key = edit_keys(model, [fact], layer, prefixes)[0]
    targets = optimise_targets(
        model,
        [fact],
        prefixes,
        layer=layer,
        site="proj",
        steps=steps,
        lr=lr,
        kl_factor=kl_factor,
        weight_decay=weight_decay,
        clamp=clamp,
    )
    value = projection_output(model, layer, key[None])[0] + targets.deltas[0]
    change = rank_one_update(stats.moment, key, targets.deltas[0])
    if not torch.isfinite(change).all():
        raise InputError("the ROME update is not finite; try another layer or more key statistics")
    return Edit(
        model=model.name,
        key=model.key,
        method="rome",
        facts=(fact,),
        layers=(layer,),
        deltas={layer: to_layout(model, change).float()},
        details={
            "layer": layer,
            "prefixes": prefixes,
            "stats": {"corpus": stats.corpus, "tokens": stats.tokens, "seq_len": stats.seq_len},
            "weight_norms": {str(layer): float(from_layout(model, weight.detach()).double().norm())},
            "optimisation": targets.summary(),
            "hyperparameters": {
                "steps": steps,
                "lr": lr,
                "kl_factor": kl_factor,
                "weight_decay": weight_decay,
                "clamp": clamp,
                "seed": seed,
            },
        },
        keys={layer: key[None]},
        values={layer: value[None]},
    )
