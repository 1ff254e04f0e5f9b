"""LEACE: least-squares concept erasure in closed form (Belrose et al. 2023, arXiv:2306.03819).

Given activations ``X`` and one-hot class labels ``Z``, the eraser

    r(x) = x - Σ^{1/2} P Σ^{+1/2} (x - μ),   P = orthogonal projection onto colspace(Σ^{+1/2} Σ_XZ)

makes the cross-covariance between ``r(X)`` and ``Z`` exactly zero, so no linear classifier can beat a
constant one on the data it was fitted on, and among all affine maps that do this it moves the points
least in mean squared distance (for every inner-product norm at once). ``Σ`` is the covariance of ``X``,
``Σ^{1/2}`` its square root and ``Σ^{+1/2}`` the pseudo-inverse of that (whitening), both from one
``eigh``; directions with (numerically) zero variance are left alone, which handles more dimensions than
examples. All arithmetic is float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InputError

_NOISE = 1e-10


@dataclass(frozen=True, eq=False)
class Leace:
    """``erase(x) = x - ((x - mean) @ down) @ up.T`` with ``down = Σ^{+1/2} U`` and ``up = Σ^{1/2} U``."""

    mean: np.ndarray  # [d]
    down: np.ndarray  # [d, rank]
    up: np.ndarray  # [d, rank]

    @property
    def rank(self) -> int:
        return int(self.down.shape[1])

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def erase(self, x: np.ndarray) -> np.ndarray:
        """Erased copies of the rows of ``x`` ([n, d] or [d]), float64."""
        x = np.asarray(x, dtype=np.float64)
        return x - ((x - self.mean) @ self.down) @ self.up.T

    def projection(self) -> np.ndarray:
        """The [d, d] oblique projection ``Q = up @ down.T`` that ``erase`` removes: ``x - Q (x - mean)``."""
        return self.up @ self.down.T


def one_hot(labels: np.ndarray) -> np.ndarray:
    """[n, classes] float64 indicators of integer labels 0..k-1."""
    labels = np.asarray(labels)
    classes = int(labels.max()) + 1
    return (labels[:, None] == np.arange(classes)[None, :]).astype(np.float64)


def fit_leace(x: np.ndarray, labels: np.ndarray) -> Leace:
    """The LEACE eraser for activations ``x`` [n, d] and integer class labels [n] (two or more classes)."""
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (x.shape[0],):
        raise InputError(f"LEACE needs activations [n, d] and n labels, got {x.shape} and {labels.shape}")
    if not np.isfinite(x).all():
        raise InputError("the activations contain NaN or infinity; LEACE cannot be fitted")
    if len(np.unique(labels)) < 2:
        raise InputError("LEACE needs examples of at least two classes")
    n = x.shape[0]
    mean = x.mean(0)
    centred = x - mean
    z = one_hot(labels)
    z -= z.mean(0)
    sigma = centred.T @ centred / n
    cross = centred.T @ z / n  # Σ_XZ, [d, classes]
    values, vectors = np.linalg.eigh(sigma)
    keep = values > values.max() * max(x.shape) * np.finfo(np.float64).eps
    root = np.sqrt(values[keep])
    basis = vectors[:, keep]
    whiten = (basis / root) @ basis.T  # Σ^{+1/2}
    unwhiten = (basis * root) @ basis.T  # Σ^{1/2}
    left, singular, _ = np.linalg.svd(whiten @ cross, full_matrices=False)
    # Whitened cross-covariances are correlations times the labels' spread (at most 1/2), so an absolute
    # threshold separates real structure from rounding.
    rank = int((singular > _NOISE).sum())
    if rank == 0:
        raise InputError("the classes have identical mean activations; there is nothing linear to erase")
    u = left[:, :rank]
    return Leace(mean, whiten @ u, unwhiten @ u)


def cross_covariance(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Σ_XZ = Cov(x, one-hot labels), [d, classes], float64: zero after a perfect linear erasure."""
    x = np.asarray(x, dtype=np.float64)
    z = one_hot(labels)
    return (x - x.mean(0)).T @ (z - z.mean(0)) / x.shape[0]
