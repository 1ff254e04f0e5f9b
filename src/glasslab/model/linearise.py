"""Norms with their scale frozen: the linearisation attribution graphs differentiate through and check against.

A LayerNorm or RMSNorm is linear once its scale ``rsqrt(stat(x) + eps)`` is held fixed. Inside
``frozen_norms(model)`` every norm of the residual stream (each block's pre- and post-norms and the final
norm) still outputs exactly what the model computes, but its gradient is that of the frozen-scale linear
map: the output is ``module(x).detach() + (linear(x) - linear(x).detach())``, whose value is the module's
own output and whose derivative is ``linear``'s. Per-head query/key norms are left alone: they act only
through the attention pattern, which a linearised pass freezes by other means.

``recorded_norm_scales(model)`` records each of those norms' scales during a pass, and inside
``fixed_norms(model, scales)`` every such norm computes ``linear(x)`` with the recorded scale: the norms
are then truly linear maps (values too, not only gradients), so a perturbed pass shows exactly what the
linearisation predicts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from ..errors import GlasslabError
from .norms import NormParams, norm_params
from .session import local_hooks

if TYPE_CHECKING:
    from .model import Model

_BLOCK_NORMS = ("attn_norm", "mlp_norm", "post_attn_norm", "post_mlp_norm")


def residual_norm_modules(model: Model) -> list[torch.nn.Module]:
    """Every norm the residual stream passes through, in forward order, the final norm last."""
    modules = []
    for layer in range(model.n_layers):
        for field in _BLOCK_NORMS:
            path = getattr(model.arch, field)
            if path is not None:
                modules.append(model.block_module(layer, path))
    modules.append(model.module(model.arch.final_norm))
    return modules


@contextlib.contextmanager
def frozen_norms(model: Model) -> Iterator[None]:
    """Within the block (this thread only), gradients see every residual norm with its scale frozen."""
    modules = residual_norm_modules(model)
    params = {id(module): norm_params(module) for module in modules}
    checked: set[int] = set()

    def straight_through(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        x = args[0]
        if not (torch.is_grad_enabled() and x.requires_grad):
            return None
        norm = params[id(module)]
        if id(module) not in checked:  # an unknown norm variant fails loudly, once per module
            _check(norm, module, x.detach(), output.detach())
            checked.add(id(module))
        linear = norm.linear(x, norm.scale(x.detach())).to(output.dtype)
        return output.detach() + (linear - linear.detach())

    with local_hooks(modules, "post", straight_through):
        yield


def _check(norm: NormParams, module: torch.nn.Module, x: torch.Tensor, output: torch.Tensor) -> None:
    """Raise if the frozen-scale reading of ``module`` does not reproduce its output on ``x``."""
    mine = norm.linear(x, norm.scale(x)) + (norm.bias if norm.bias is not None else 0.0)
    expected = output.float()
    if float((mine - expected).abs().max()) > 1e-3 * float(expected.abs().max()) + 1e-5:
        raise GlasslabError(f"the norm {type(module).__name__} is not a LayerNorm/RMSNorm glasslab can linearise")


NormScales = dict[int, torch.Tensor]  # id(norm module) -> [batch, pos] scale


@contextlib.contextmanager
def recorded_norm_scales(model: Model) -> Iterator[NormScales]:
    """Within the block, record each residual norm's scale on its input (the last pass's, per module)."""
    modules = residual_norm_modules(model)
    params = {id(module): norm_params(module) for module in modules}
    scales: NormScales = {}

    def record(module: torch.nn.Module, args: tuple, _output: torch.Tensor) -> None:
        scales[id(module)] = params[id(module)].scale(args[0].detach())

    with local_hooks(modules, "post", record):
        yield scales


@contextlib.contextmanager
def fixed_norms(model: Model, scales: NormScales) -> Iterator[None]:
    """Within the block, every residual norm is the linear map with its recorded scale (``recorded_norm_scales``)."""
    modules = residual_norm_modules(model)
    params = {id(module): norm_params(module) for module in modules}

    def linear(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        norm, x = params[id(module)], args[0]
        scale = scales[id(module)]
        out = norm.linear(x, scale.expand(x.shape[:-1])) + (norm.bias if norm.bias is not None else 0.0)
        return out.to(output.dtype)

    with local_hooks(modules, "post", linear):
        yield
