"""Linear probes with scikit-learn: folds that keep words apart, cross-validated accuracy, the probe's direction.

Every probe standardises its inputs on the training fold only (activations differ in scale by orders of
magnitude across dimensions and layers, and an L2 penalty on raw units would mostly punish the large
ones). ``strength`` is the L2 penalty: ``C = 1 / strength`` for logistic regression, ``alpha = strength``
for ridge (a ``RidgeClassifier``: least squares on ±1 targets, one column per class).

Fits run with BLAS on one thread: L-BFGS on a probe's small problems makes thousands of tiny BLAS calls,
and a second thread only adds hand-offs (on a busy 2-core machine, 15x slower than one thread).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ...errors import InputError

PROBES: tuple[str, ...] = ("logistic", "ridge")
Fold = tuple[np.ndarray, np.ndarray]  # (train indices, test indices)


def make_probe(kind: str = "logistic", strength: float = 1.0) -> Pipeline:
    """An unfitted standardise-then-classify pipeline."""
    if kind not in PROBES:
        raise InputError(f"probe '{kind}' is unknown; use {' or '.join(PROBES)}")
    if not (np.isfinite(strength) and strength > 0):
        raise InputError(f"the probe's regularisation strength must be a positive number, got {strength}")
    if kind == "logistic":
        classifier = LogisticRegression(C=1.0 / strength, max_iter=2000)
    else:
        classifier = RidgeClassifier(alpha=strength)
    return make_pipeline(StandardScaler(), classifier)


def make_folds(labels: np.ndarray, groups: Sequence[str] | None, n_folds: int, seed: int) -> list[Fold]:
    """Stratified folds; with ``groups``, every group (word type) lies in one fold only.

    The number of folds shrinks to what the data allows (each class needs a member in every fold).
    """
    labels = np.asarray(labels)
    if n_folds < 2:
        raise InputError(f"cross-validation needs at least 2 folds, got {n_folds}")
    placeholder = np.zeros((len(labels), 1))
    if groups is None:
        k = min(n_folds, int(np.bincount(labels).min()))
        splitter = StratifiedKFold(n_splits=max(k, 2), shuffle=True, random_state=seed)
        splits = splitter.split(placeholder, labels) if k >= 2 else []
    else:
        codes = np.unique(np.asarray(groups), return_inverse=True)[1]
        per_class = min(len(np.unique(codes[labels == c])) for c in np.unique(labels))
        k = min(n_folds, per_class)
        splitter = StratifiedGroupKFold(n_splits=max(k, 2), shuffle=True, random_state=seed)
        splits = splitter.split(placeholder, labels, codes) if k >= 2 else []
    folds = [(np.asarray(train), np.asarray(test)) for train, test in splits]
    if not folds or any(len(np.unique(labels[train])) < 2 or len(test) == 0 for train, test in folds):
        what = "distinct words (groups)" if groups is not None else "examples"
        raise InputError(
            f"too few {what} per class for {n_folds}-fold cross-validation; add examples or use fewer folds"
        )
    return folds


def cross_validate(
    x: np.ndarray, labels: np.ndarray, folds: Sequence[Fold], kind: str = "logistic", strength: float = 1.0
) -> np.ndarray:
    """Test accuracy of a fresh probe on each fold, [folds].

    A training fold with one class only (possible for control labels, which are not what the folds were
    stratified on) gets the constant prediction a probe would learn there.
    """
    scores = []
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)  # separable data: the optimum is at infinity
        for train, test in folds:
            seen = np.unique(labels[train])
            if len(seen) < 2:
                scores.append(float((labels[test] == seen[0]).mean()))
                continue
            probe = make_probe(kind, strength).fit(x[train], labels[train])
            scores.append(float((probe.predict(x[test]) == labels[test]).mean()))
    return np.array(scores)


@dataclass(frozen=True)
class Direction:
    """A binary probe in the activation's own units: ``score(x) = x @ weights + bias`` (> 0: positive class)."""

    weights: np.ndarray  # [d] float64
    bias: float
    train_accuracy: float

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.weights + self.bias


def fit_direction(x: np.ndarray, positive: np.ndarray, kind: str = "logistic", strength: float = 1.0) -> Direction:
    """Fit a probe for ``positive`` (bool [n]) on all of ``x`` and undo the standardisation."""
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        raise InputError("a probe direction needs examples of both the positive class and the others")
    probe = make_probe(kind, strength)
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(x, positive.astype(int))
    scaler, classifier = probe[0], probe[-1]
    coefficients = np.asarray(classifier.coef_, dtype=np.float64).reshape(-1)
    weights = coefficients / scaler.scale_
    bias = float(np.asarray(classifier.intercept_).reshape(-1)[0] - scaler.mean_ @ weights)
    accuracy = float((probe.predict(x) == positive.astype(int)).mean())
    return Direction(weights, bias, accuracy)
