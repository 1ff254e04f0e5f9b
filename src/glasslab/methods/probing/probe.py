"""``probe``: cross-validated linear probes at every layer, with control tasks; ``probe_vector``: a probe's
direction as a steering vector.

Scoring (per hook, same folds for every hook):

- ``accuracy``: when word types repeat, folds keep each word type in one fold (``StratifiedGroupKFold``), so a
  probe is scored on words it never saw and cannot win by recognising them; otherwise plain stratified folds.
- ``seen_accuracy`` and ``control_accuracy``: stratified folds that share words (Hewitt & Liang's setting,
  where memorising words would pay), the real labels and the control task's random-per-word labels;
  ``selectivity`` is their difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ...errors import InputError
from ...model.model import Model
from ...progress import progress
from ..intervene.steering import SteeringVector, vector_hook
from .activations import Activations, harvest, probe_hooks
from .control import control_labels, selectivity
from .datasets import ProbeDataset, load_probe_dataset
from .probes import cross_validate, fit_direction, make_folds, make_probe
from .result import LayerProbe, Probing


def class_indices(dataset: ProbeDataset) -> np.ndarray:
    """Each example's label as its index in ``dataset.classes``."""
    lookup = {label: i for i, label in enumerate(dataset.classes)}
    return np.array([lookup[label] for label in dataset.labels])


def score_layers(
    values: Mapping[str, np.ndarray],
    labels: np.ndarray,
    groups: Sequence[str],
    *,
    probe: str = "logistic",
    strength: float = 1.0,
    n_folds: int = 5,
    seed: int = 0,
    layer_of: Mapping[str, int | None] | None = None,
) -> tuple[list[LayerProbe], str, int]:
    """Per-hook scores for activations ``values[hook]`` [n, d]: (scores, fold kind, folds used)."""
    make_probe(probe, strength)  # validate before any work
    labels = np.asarray(labels)
    repeated = len(set(groups)) < len(groups)
    seen_folds = make_folds(labels, None, n_folds, seed)
    folds = make_folds(labels, groups, n_folds, seed) if repeated else seen_folds
    control = control_labels(groups, labels, seed)
    scores = []
    for hook in progress(list(values), description="probes", unit="hook"):
        x = values[hook]
        task = cross_validate(x, labels, folds, probe, strength)
        seen = task if folds is seen_folds else cross_validate(x, labels, seen_folds, probe, strength)
        controlled = cross_validate(x, control, seen_folds, probe, strength)
        scores.append(
            LayerProbe(
                hook=hook,
                layer=None if layer_of is None else layer_of.get(hook),
                features=int(x.shape[1]),
                accuracy=float(task.mean()),
                accuracy_std=float(task.std()),
                fold_accuracies=[float(a) for a in task],
                seen_accuracy=float(seen.mean()),
                control_accuracy=float(controlled.mean()),
                control_std=float(controlled.std()),
                selectivity=selectivity(seen.mean(), controlled.mean()),
            )
        )
    return scores, ("grouped" if repeated else "random"), len(folds)


def probe(
    model: Model,
    dataset: str | Path | ProbeDataset,
    *,
    hook: str | Sequence[str] = "resid_post",
    layers: Sequence[int] | None = None,
    probe: str = "logistic",
    strength: float = 1.0,
    n_folds: int = 5,
    seed: int = 0,
    batch_size: int = 32,
    activations: Activations | None = None,
) -> Probing:
    """Train and cross-validate a linear probe for ``dataset`` at ``hook`` in every layer (or ``layers``).

    ``dataset``: a built-in name (``number``, ``city``, ``sentiment``), a ``.csv``/``.jsonl`` file or a
    ``ProbeDataset``. ``hook``: a block site (``resid_post``, ``mlp.post``, ``attn.z``...) taken at each
    layer, or hook names / wildcards. ``probe``: ``logistic`` or ``ridge``; ``strength``: the L2 penalty.
    Pass ``activations`` (from ``harvest``) to reuse a forward pass.
    """
    data = load_probe_dataset(dataset)
    hooks = probe_hooks(model, hook, layers)
    acts = activations if activations is not None else harvest(model, data, hooks, batch_size=batch_size)
    missing = [h for h in hooks if h not in acts.values]
    if missing:
        raise InputError(f"the activations given do not include '{missing[0]}'; harvest them with that hook")
    labels = class_indices(data)
    layers_scored, folds_kind, folds_used = score_layers(
        {h: acts.values[h] for h in hooks},
        labels,
        acts.examples.groups,
        probe=probe,
        strength=strength,
        n_folds=n_folds,
        seed=seed,
        layer_of={h: model.hook_spec(h).layer for h in hooks},
    )
    counts = np.bincount(labels, minlength=len(data.classes))
    return Probing(
        model=model.name,
        dataset=data.name,
        description=data.description,
        examples=len(data),
        classes=data.classes,
        class_counts=[int(c) for c in counts],
        word_types=len(set(acts.examples.groups)),
        probe=probe,
        strength=float(strength),
        folds=folds_kind,
        n_folds=folds_used,
        seed=seed,
        majority=float(counts.max() / counts.sum()),
        chance=1.0 / len(data.classes),
        layers=layers_scored,
    )


def _position_kind(data: ProbeDataset) -> str:
    kinds = {
        "last" if e.position == "last" else "index" if isinstance(e.position, int) else "word" for e in data.examples
    }
    return kinds.pop() if len(kinds) == 1 else "mixed"


def probe_vector(
    model: Model,
    dataset: str | Path | ProbeDataset,
    *,
    layer: int | None = None,
    hook: str | None = None,
    positive: str | None = None,
    probe: str = "logistic",
    strength: float = 1.0,
    batch_size: int = 32,
    activations: Activations | None = None,
) -> SteeringVector:
    """A probe's direction at a residual hook as a ``SteeringVector`` (method ``"probe"``) for ``steer``.

    The probe (``positive`` class against the rest) is fitted on every example; the vector is its unit
    weight direction (in the activation's own units) times the gap between the classes' mean projections
    on it, so ``scale=1`` moves an average other-class activation to the positive class along the probe.
    ``hook`` defaults to ``blocks.{layer}.resid_post``, the hook ``probe`` scores by default.
    """
    data = load_probe_dataset(dataset)
    if hook is None:
        if layer is None:
            raise InputError("say where to fit the probe: give a layer (e.g. layer=6) or a hook name")
        if not 0 <= layer < model.n_layers:
            raise InputError(f"layer must be in 0..{model.n_layers - 1}, got {layer}")
        hook = f"blocks.{layer}.resid_post"
    hook = vector_hook(model, None, hook)
    chosen = positive if positive is not None else (data.positive or data.classes[-1])
    if chosen not in data.classes:
        raise InputError(f"'{chosen}' is not a class of '{data.name}' (classes: {', '.join(data.classes)})")
    acts = activations if activations is not None else harvest(model, data, [hook], batch_size=batch_size)
    if hook not in acts.values:
        raise InputError(f"the activations given do not include '{hook}'; harvest them with that hook")
    x = acts.values[hook].astype(np.float64)
    is_positive = np.array([label == chosen for label in data.labels])
    direction = fit_direction(x, is_positive, probe, strength)
    unit = direction.weights / np.linalg.norm(direction.weights)
    mean_difference = x[is_positive].mean(0) - x[~is_positive].mean(0)
    gap = float(mean_difference @ unit)
    if not gap > 0:
        raise InputError(
            f"the probe at {hook} does not separate '{chosen}' from the rest (class means do not differ along it); "
            "pick a layer where probe accuracy is high"
        )
    others = ", ".join(c for c in data.classes if c != chosen)
    return SteeringVector(
        model=model.name,
        key=model.key,
        hook=hook,
        method="probe",
        position=_position_kind(data),
        pairs=[(f"class {chosen} ({int(is_positive.sum())})", f"class {others} ({int((~is_positive).sum())})")],
        vector=torch.from_numpy(unit * gap).float(),
        pair_projections=[gap],
        pair_cosines=[float(gap / np.linalg.norm(mean_difference))],
    )
