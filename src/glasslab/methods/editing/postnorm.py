"""Inverting an RMSNorm exactly: which input makes the norm output a wanted vector (MEMIT on Gemma 2/3).

Gemma 2/3 normalise the MLP's output ``o`` before adding it to the residual stream:
``y = g * o / sqrt(mean(o^2) + eps)``. The output depends only on the direction of ``o``: ``y / g`` always has
(nearly) unit root-mean-square, so ``y`` lies on a sphere stretched by the gains ``g``. A wanted change of the
stream ``y0 -> y*`` is reachable only up to that constraint, so the best input is found in two steps:

1. the unit-rms ``u`` closest to the target, ``min ||g * u - y*||^2`` subject to ``||u||^2 = d``: with a
   Lagrange multiplier ``mu``, ``u_i = g_i y*_i / (g_i^2 + mu)``, and the global minimum takes the one root of
   ``sum u_i^2 = d`` with ``mu > -min g^2`` (a trust-region subproblem with a diagonal matrix; found by
   bisection). When the dimensions of smallest gain get no pull from the target (a "hard case", e.g. gains of
   exactly 0), ``mu = -min g^2`` and the rest of the length goes into those dimensions, where it changes only
   the norm's scale;
2. ``o* = c u`` with ``c`` the current output's rms (the norm discards the size; keeping it keeps the change
   of ``o`` small), shrunk by ``eps``'s share so that the norm's output is ``g * u`` exactly.

Freezing the norm's scale instead (the linearisation norms.py uses for attribution) is wrong here: MEMIT's
wanted changes are as large as ``o`` itself, and through the frozen map they deliver as little as a tenth of
the wanted change, or move the stream the other way (docs/editing.md, "MEMIT through a post-norm").
"""

from __future__ import annotations

import torch

from ...errors import InputError
from ...model.norms import NormParams

_BISECTIONS = 200  # halvings of a log-spaced bracket: far below float64 resolution


def nearest_unit_rms(gain: torch.Tensor, target: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """[n, d] float64: the ``u`` with ``mean(u^2) = 1`` minimising ``||gain * u - target||`` for each row.

    ``current`` [n, d] (the present input) only picks the direction of the free part in a hard case, so that a
    target the norm already outputs gives back the present direction.
    """
    gain, target, current = gain.double(), target.double(), current.double()
    d = gain.shape[-1]
    curvature = gain**2
    floor = curvature.min()
    pull = gain * target  # [n, d]
    shifted = curvature - floor  # >= 0; mu = floor_shift - floor, with shift t > 0

    def length(t: torch.Tensor) -> torch.Tensor:  # [n]: sum of u_i^2 at shift t [n]
        return ((pull / (shifted + t[:, None])) ** 2).sum(-1)

    n = target.shape[0]
    scale = float(curvature.max()) + 1.0
    low = torch.full((n,), 1e-30 * scale, dtype=torch.float64)
    high = pull.norm(dim=-1) / d**0.5 + 1e-30 * scale  # sum u^2 <= |pull|^2 / t^2 <= d from here on
    hard = length(low) < d
    for _ in range(_BISECTIONS):
        middle = (low * high).sqrt()
        longer = length(middle) > d
        low, high = torch.where(longer, middle, low), torch.where(longer, high, middle)
    regular = pull / (shifted + high[:, None])
    # Hard case: the least-gain dimensions take the length the others leave.
    least = shifted == 0
    inner = torch.where(least, torch.zeros_like(pull), pull / torch.where(least, 1.0, shifted))
    rest = (d - (inner**2).sum(-1)).clamp_min(0).sqrt()
    free = torch.where(least, current, torch.zeros_like(current))
    free = torch.where(free.norm(dim=-1, keepdim=True) > 0, free, least.double().expand_as(free))
    hard_u = inner + rest[:, None] * free / free.norm(dim=-1, keepdim=True)
    return torch.where(hard[:, None], hard_u, regular)


def invert_rms_norm(params: NormParams, target: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """[n, d] float64: the norm input nearest in direction to making the norm output ``target`` [n, d], at the
    size of ``current`` [n, d] (the present input); exact whenever ``target`` is an output the norm can give."""
    if params.centre or params.bias is not None:
        raise InputError("only an RMSNorm post-norm can be inverted (this model's post-MLP norm is a LayerNorm)")
    current = current.double()
    size = current.pow(2).mean(-1).sqrt().clamp_min(1e-12)  # [n]
    reach = size / (size**2 + params.eps).sqrt()  # the norm's output has rms(y / g) = reach, not 1
    unit = nearest_unit_rms(params.weight.double().cpu(), target.double() / reach[:, None], current)
    return unit * size[:, None]
