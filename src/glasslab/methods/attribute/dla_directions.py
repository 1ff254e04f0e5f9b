"""The linearised directions behind direct logit attribution (``methods.attribute.dla``): the unembedding direction of a
token (minus another's), that direction through the final norm with its scale frozen, and each MLP neuron's
direct effect along it. Shared with ``methods.observe.neurons``, which ranks neurons by the same direct effect.
"""

from __future__ import annotations

import torch

from ...errors import InputError
from ...model.model import Model
from ...model.norms import NormParams


def _optional(model: Model, name: str, layer: int | None = None) -> torch.Tensor | None:
    """A bias as float32, or None where the model has none."""
    weight = model.weights.get(name, layer)
    return None if weight is None else weight.detach().float()


def unembed_direction(model: Model, target: int, versus: int | None) -> tuple[torch.Tensor, float]:
    """``W_U[:, t] (- W_U[:, v])`` as [d_model] float32, and the unembedding bias's share of the logit."""
    unembed = model.weights.W_U().detach()
    direction = unembed[:, target].float() - (unembed[:, versus].float() if versus is not None else 0.0)
    bias = _optional(model, "b_U")
    constant = 0.0 if bias is None else float(bias[target] - (bias[versus] if versus is not None else 0.0))
    return direction, constant


def effective_direction(params: NormParams, scale: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``u`` with ``component · u`` = the component's share of the logit, final norm scale frozen."""
    u = scale * params.weight * direction
    return u - u.mean() if params.centre else u


def check_position(position: int, n_tokens: int) -> int:
    if not -n_tokens <= position < n_tokens:
        raise InputError(
            f"position {position} is out of range for a prompt of {n_tokens} tokens "
            f"(valid: 0..{n_tokens - 1} or -{n_tokens}..-1)"
        )
    return position % n_tokens


def neuron_effects(model: Model, layer: int, post: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per neuron at one position: (direct effect per unit of activation [d_mlp], contribution [d_mlp]).

    ``post`` is the layer's ``mlp.post`` at that position [d_mlp]. In post-norm families the MLP's
    post-norm is linearised with its scale frozen at its value on the whole MLP output.
    """
    w_out = model.weights.W_out(layer).detach().float().to(u.device)
    post = post.float().to(u.device)
    write = u
    if model.arch.post_mlp_norm:
        params = model.weights.post_mlp_norm(layer)
        pre = post @ w_out
        bias = _optional(model, "b_out", layer)
        if bias is not None:
            pre = pre + bias
        write = params.scale(pre) * params.weight * u
    per_unit = w_out @ write
    return per_unit, post * per_unit
