"""Hand-written gradients the training losses use, each as its paper defines it.

- TopK (Gao et al. 2024): only k features per token are active, so the backward pass touches only their
  encoder columns and decoder rows. ``TopKEncode`` computes the dense encoder product once, keeps the top
  k, and its backward builds the encoder gradient as a sparse [d_sae, batch] x [batch, d_in] product (3-4x
  faster on CPU than autograd through a dense [batch, d_sae] matrix); ``decode_sparse`` is an
  ``embedding_bag`` over the active decoder rows.
- JumpReLU (Rajamanoharan et al. 2024): ``f = z * H(z - theta)`` with straight-through pseudo-derivatives
  for the threshold: d f/d theta = -(theta / eps) K((z - theta) / eps) and, for the L0 penalty
  sum H(z - theta), d/d theta = -(1 / eps) K((z - theta) / eps), K the rectangle kernel 1{|u| < 1/2};
  z gets the ordinary derivative H(z - theta) (and none from the L0 term).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class TopKEncode(torch.autograd.Function):
    """(x, b_dec, W_enc, b_enc, k) -> (activations [B, k], indices [B, k]) of ``topk((x - b_dec) W_enc + b_enc)``,
    ReLU'd; the gradient flows to b_dec, W_enc and b_enc at the selected features only."""

    @staticmethod
    def forward(ctx, x, b_dec, w_enc, b_enc, k: int):
        centred = x - b_dec
        pre = torch.addmm(b_enc, centred, w_enc)
        values, indices = pre.topk(k, dim=-1, sorted=False)
        active = values > 0
        ctx.save_for_backward(centred, w_enc, indices, active)
        ctx.mark_non_differentiable(indices)
        return values * active, indices

    @staticmethod
    def backward(ctx, grad_acts, _grad_indices):
        centred, w_enc, indices, active = ctx.saved_tensors
        grad = (grad_acts * active).reshape(-1)
        flat = indices.reshape(-1)
        d_sae = w_enc.shape[1]
        grad_b_enc = torch.zeros(d_sae, dtype=grad.dtype, device=grad.device).index_add_(0, flat, grad)
        rows = torch.arange(indices.shape[0], device=flat.device).repeat_interleave(indices.shape[1])
        sparse = torch.sparse_coo_tensor(
            torch.stack([flat, rows]), grad, (d_sae, indices.shape[0]), check_invariants=False
        )
        grad_w_enc = torch.sparse.mm(sparse, centred).t()
        grad_b_dec = -(w_enc @ grad_b_enc)  # x - b_dec feeds every pre-activation
        return None, grad_b_dec, grad_w_enc, grad_b_enc, None


def decode_sparse(acts: torch.Tensor, indices: torch.Tensor, w_dec: torch.Tensor, b_dec: torch.Tensor) -> torch.Tensor:
    """sum_j acts[:, j] * W_dec[indices[:, j]] + b_dec without a dense [B, d_sae] matrix."""
    return F.embedding_bag(indices, w_dec, per_sample_weights=acts, mode="sum") + b_dec


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    return (u.abs() < 0.5).to(u.dtype)


class JumpReLU(torch.autograd.Function):
    """``z * H(z - theta)``; pseudo-derivative for theta as in Rajamanoharan et al. 2024, eq. 11."""

    @staticmethod
    def forward(ctx, z, theta, bandwidth: float):
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return z * (z > theta)

    @staticmethod
    def backward(ctx, grad_out):
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_z = grad_out * (z > theta)
        grad_theta = -(theta / eps) * _rectangle((z - theta) / eps) * grad_out
        return grad_z, grad_theta.reshape(-1, theta.shape[-1]).sum(0), None


class Step(torch.autograd.Function):
    """``H(z - theta)`` (for the L0 penalty); gradient only to theta, as in Rajamanoharan et al. 2024, eq. 12."""

    @staticmethod
    def forward(ctx, z, theta, bandwidth: float):
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_theta = -(1.0 / eps) * _rectangle((z - theta) / eps) * grad_out
        return None, grad_theta.reshape(-1, theta.shape[-1]).sum(0), None
