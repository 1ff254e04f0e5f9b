"""Control tasks and selectivity (Hewitt & Liang 2019, "Designing and Interpreting Probes with Control Tasks").

A control task keeps the dataset's inputs but gives every word type a label drawn at random (from the
task's own label distribution), fixed for all of that word's occurrences. The labels then carry no
linguistic property: a probe can only score above chance on them by memorising which word is which.
Scored on the same folds as the real task (folds that share words, else memorising could not help),

    selectivity = task accuracy - control accuracy

is high when the representation makes the property easy to read and word identity alone does not
explain it; a probe that reaches high task accuracy with low selectivity may be memorising.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import InputError

_ATTEMPTS = 100


def control_labels(groups: Sequence[str], labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """One random label per word type, drawn from the empirical label distribution, spread over its examples.

    Redrawn (same seed stream) until at least two classes appear, each on two or more examples, so the
    control task can be cross-validated like the real one.
    """
    labels = np.asarray(labels)
    types, inverse = np.unique(np.asarray(groups), return_inverse=True)
    if len(types) < 2:
        raise InputError("control tasks need at least two distinct word types (groups)")
    rng = np.random.default_rng(seed)
    for _ in range(_ATTEMPTS):
        per_type = rng.choice(labels, size=len(types), replace=True)
        control = per_type[inverse]
        counts = np.bincount(control, minlength=int(labels.max()) + 1)
        if (counts[counts > 0] >= 2).all() and (counts > 0).sum() >= 2:
            return control
    raise InputError("could not draw a control task with two classes; the dataset needs more word types")


def selectivity(task_accuracy: float, control_accuracy: float) -> float:
    """Task accuracy minus control accuracy on the same folds (Hewitt & Liang's selectivity)."""
    return float(task_accuracy) - float(control_accuracy)
