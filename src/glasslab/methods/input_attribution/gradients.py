"""Gradient methods: saliency, gradient x input and integrated gradients (Sundararajan et al. 2017).

All three differentiate ``f`` with respect to the prompt's embeddings (the ``embed`` hook output) and
reduce each token's d_model-vector to one number.

- Saliency: the L2 norm of the gradient at the prompt; how sensitive ``f`` is to the token, unsigned.
- Gradient x input: ``sum_d x_d * df/dx_d``, the first-order Taylor share of each token (captum's
  InputXGradient, summed over d_model).
- Integrated gradients: ``(x - x') * integral_0^1 df/dx(x' + a (x - x')) da``, the gradient averaged
  along the straight path from the baseline ``x'`` to the prompt. Its scores add up to
  ``f(x) - f(x')`` (completeness); the quadrature's shortfall is reported as the completeness error
  and shrinks as ``steps`` grows. Rules: Gauss-Legendre (default; exact for polynomials of degree
  2*steps - 1 along the path), midpoint Riemann, trapezoid. Path points are evaluated in batches.
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import InputError
from .prepared import Prepared
from .result import MethodOutput

RULES: tuple[str, ...] = ("gauss_legendre", "riemann_middle", "riemann_trapezoid")
MAX_STEPS = 1024


def saliency(prep: Prepared) -> MethodOutput:
    grad = prep.input_gradient()[prep.positions].double()
    return MethodOutput(grad.norm(dim=-1), evaluations=1)


def gradient_x_input_embedding(prep: Prepared) -> torch.Tensor:
    """[n, d] gradient x input per embedding coordinate (0 at an unattributed BOS)."""
    product = (prep.inputs[0].double() * prep.input_gradient().double()).clone()
    product[[p for p in range(product.shape[0]) if p not in prep.positions]] = 0.0
    return product


def gradient_x_input(prep: Prepared) -> MethodOutput:
    return MethodOutput(gradient_x_input_embedding(prep)[prep.positions].sum(-1), evaluations=1)


def quadrature(rule: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(points in [0, 1], weights summing to 1) for integrating along the path."""
    if rule not in RULES:
        raise InputError(f"unknown integration rule '{rule}'; choose one of {', '.join(RULES)}")
    if not 2 <= steps <= MAX_STEPS:
        raise InputError(f"steps must be in 2..{MAX_STEPS}, got {steps}")
    if rule == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return torch.tensor((nodes + 1) / 2), torch.tensor(weights / 2)
    if rule == "riemann_middle":
        return (torch.arange(steps, dtype=torch.float64) + 0.5) / steps, torch.full(
            (steps,), 1 / steps, dtype=torch.float64
        )
    weights = torch.full((steps,), 1 / (steps - 1), dtype=torch.float64)
    weights[[0, -1]] /= 2
    return torch.linspace(0, 1, steps, dtype=torch.float64), weights


def integrated_gradients_embedding(prep: Prepared, steps: int = 64, rule: str = "gauss_legendre") -> torch.Tensor:
    """[n, d] integrated gradients per embedding coordinate, from ``prep.reference`` to ``prep.inputs``."""
    alphas, weights = quadrature(rule, steps)
    delta = prep.inputs[0] - prep.reference[0]
    points = prep.reference + alphas.to(delta.dtype)[:, None, None] * delta  # [steps, n, d]
    _, grads = prep.gradients(points)
    mean_grad = torch.einsum("s,snd->nd", weights, grads.double())
    return delta.double() * mean_grad


def integrated_gradients(prep: Prepared, steps: int = 64, rule: str = "gauss_legendre") -> MethodOutput:
    scores = integrated_gradients_embedding(prep, steps, rule)[prep.positions].sum(-1)
    error = abs(float(scores.sum()) - (prep.full_value - prep.reference_value))
    return MethodOutput(scores, evaluations=steps, completeness_error=error, details={"steps": steps, "rule": rule})
