"""Norms as frozen-scale linear maps: how direct logit attribution and per-head outputs see them.

A LayerNorm or RMSNorm is linear once its scale ``rsqrt(stat(x) + eps)`` is fixed; the linearisations
in ``Model.head_out`` (post-norm families) and in the attribution methods freeze it on the full input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import GlasslabError
from .offload import execution_device, onloaded


@dataclass(frozen=True)
class NormParams:
    """A norm as ``(x - centre?) * rsqrt(stat(x) + eps) * weight + bias``."""

    centre: bool  # LayerNorm subtracts the mean; RMSNorm does not
    weight: torch.Tensor  # [d_model] float32, the effective weight (Gemma: 1 + weight)
    bias: torch.Tensor | None
    eps: float

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """[...]: the norm's scale on ``x`` [..., d_model], the factor frozen by the linearisation."""
        x = x.float()
        if self.centre:
            return torch.rsqrt(x.var(-1, unbiased=False) + self.eps)
        return torch.rsqrt(x.pow(2).mean(-1) + self.eps)

    def linear(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The norm's linear part with the scale frozen: ``(x - mean?) * scale * weight`` (no bias)."""
        x = x.float()
        if self.centre:
            x = x - x.mean(-1, keepdim=True)
        return x * scale[..., None] * self.weight


def norm_params(module: torch.nn.Module) -> NormParams:
    """Read a LayerNorm or an RMSNorm of any family.

    An RMSNorm's effective weight is read by running the module on a vector of ones (mean square 1),
    so variants such as Gemma's ``(1 + weight)`` need no special case; ``check_norm`` then confirms
    the reading against the module on real activations.
    """
    if isinstance(module, torch.nn.LayerNorm):
        d = module.normalized_shape[-1]
        weight = onloaded(module, "weight", module.weight).float() if module.weight is not None else torch.ones(d)
        bias = onloaded(module, "bias", module.bias).float() if module.bias is not None else None
        return NormParams(True, weight.detach(), None if bias is None else bias.detach(), float(module.eps))
    eps = getattr(module, "eps", None)
    if eps is None:
        eps = getattr(module, "variance_epsilon", None)
    weight_param = getattr(module, "weight", None)
    if eps is None or weight_param is None:
        raise GlasslabError(f"cannot linearise norm {type(module).__name__}: expected a LayerNorm or an RMSNorm")
    device = execution_device(module) or weight_param.device  # an offloaded weight lies on meta
    ones = torch.ones(weight_param.shape[-1], dtype=weight_param.dtype, device=device)
    # forward(), not __call__: the probe must not fire a run's hooks on this norm (accelerate's, which load an
    # offloaded weight, wrap forward itself)
    with torch.inference_mode():
        weight = module.forward(ones).float() * math.sqrt(1.0 + float(eps))
    return NormParams(False, weight.clone(), None, float(eps))


def check_norm(params: NormParams, module: torch.nn.Module, x: torch.Tensor, what: str) -> None:
    """Raise if ``params`` do not reproduce ``module`` on ``x`` (an unknown norm variant)."""
    with torch.inference_mode():
        expected = module(x).float()
    mine = params.linear(x, params.scale(x)) + (params.bias if params.bias is not None else 0.0)
    tolerance = 1e-3 * float(expected.abs().max()) + 1e-5
    if float((mine - expected).abs().max()) > tolerance:
        raise GlasslabError(f"the {what} ({type(module).__name__}) is not a LayerNorm/RMSNorm glasslab can linearise")
