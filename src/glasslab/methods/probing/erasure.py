"""Concept erasure in the model: a LEACE eraser as an intervention, and ``erase`` to fit and judge one.

``ConceptEraser`` is an ``Intervention`` (``with model.intervene(eraser):``): at its hook it replaces each
selected activation ``x`` (heads flattened, for per-head hooks) by ``x - Q (x - mean)``, computed in
float64. By default it acts at every position; the statistics come from the dataset's chosen positions,
so ``position=`` can restrict it to those (e.g. ``-1`` for datasets read at the last token).

``erase`` reports three things: (1) a probe's accuracy at the hook before and after erasure, with the
eraser and probe fitted on training folds only and scored on the held-out fold, so the number is not the
in-sample guarantee; (2) with the eraser in the forward pass, probe accuracy at later layers, which shows
whether the model recomputes the concept; (3) the model's mean next-token loss on neutral texts with and
without it, which shows the cost of the edit to everything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...errors import InputError
from ...interventions import Intervention
from ...interventions.selection import as_list
from ...model.hooks import ApplyContext, Layout
from ...model.model import Model
from ..metrics import make_metric
from .activations import Activations, harvest, probe_hooks
from .datasets import ProbeDataset, load_probe_dataset
from .leace import Leace, cross_covariance, fit_leace
from .probe import class_indices
from .probes import Fold, cross_validate, make_folds, make_probe
from .result import DownstreamScore, Erasure

_ERASABLE = ("resid", "neurons", "query_heads", "kv_heads")
NEUTRAL_TEXTS = (
    "The train leaves the station at seven in the morning and arrives before noon.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "She opened the window and looked out at the garden behind the house.",
    "The library is closed on Sundays and on public holidays.",
    "He wrote a short letter to his brother about the weather last week.",
    "The museum keeps a large collection of old maps and drawings.",
    "Most birds build their nests in the spring, when the days grow longer.",
    "The meeting was moved from Tuesday to Thursday afternoon.",
)


@dataclass(frozen=True, eq=False)
class ConceptEraser(Intervention):
    """Erase a concept linearly at ``hook`` with a fitted LEACE eraser (see ``fit_eraser``)."""

    leace: Leace = None  # type: ignore[assignment]
    dataset: str = ""
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.leace, Leace):
            raise InputError("ConceptEraser needs leace=<a fitted Leace>; make one with fit_eraser(model, dataset)")
        tensors = {name: torch.from_numpy(getattr(self.leace, name)) for name in ("mean", "down", "up")}
        object.__setattr__(self, "_tensors", tensors)

    def check_index(self, hook_name: str, layout: Layout, sizes: dict[str, int]) -> None:
        if layout not in _ERASABLE:
            raise InputError(f"a concept eraser cannot act on '{hook_name}'; use a residual, MLP or per-head hook")
        super().check_index(hook_name, layout, sizes)

    def replacement(self, act: torch.Tensor, layout: Layout, ctx: ApplyContext, mask: torch.Tensor | None):
        flat = act.reshape(*act.shape[:2], -1)
        if flat.shape[-1] != self.leace.dim:
            raise InputError(
                f"the eraser was fitted on {self.leace.dim} features but '{ctx.hook}' has {flat.shape[-1]}; "
                "apply it at the hook it was fitted on"
            )
        t = {k: v.to(act.device) for k, v in self._tensors.items()}  # type: ignore[attr-defined]
        x = flat.double()
        erased = x - ((x - t["mean"]) @ t["down"]) @ t["up"].T
        return erased.reshape(act.shape)


def _erasure_hook(model: Model, layer: int | None, hook: str | None, site: str) -> str:
    if hook is None:
        if layer is None:
            raise InputError("say where to erase: give a layer (e.g. layer=6) or a hook name")
        if not 0 <= layer < model.n_layers:
            raise InputError(f"layer must be in 0..{model.n_layers - 1}, got {layer}")
        hook = f"blocks.{layer}.{site}"
    if any(ch in hook for ch in "*?["):
        raise InputError(f"an eraser is fitted at one hook; '{hook}' is a wildcard")
    spec = model.hook_spec(hook)
    if spec.layout not in _ERASABLE:
        raise InputError(f"a concept eraser cannot act on '{hook}'; use a residual, MLP or per-head hook")
    return hook


def fit_eraser(
    model: Model,
    dataset: str | Path | ProbeDataset,
    *,
    layer: int | None = None,
    hook: str | None = None,
    site: str = "resid_post",
    position: int | Sequence[int] | None = None,
    batch_size: int = 32,
) -> ConceptEraser:
    """A LEACE eraser for ``dataset``'s labels, fitted on the activations at ``hook`` (default
    ``blocks.{layer}.{site}``) at each example's position; an intervention for ``model.intervene``."""
    data = load_probe_dataset(dataset)
    hook = _erasure_hook(model, layer, hook, site)
    x = harvest(model, data, [hook], batch_size=batch_size).values[hook]
    return ConceptEraser(
        hook, position=position, leace=fit_leace(x, class_indices(data)), dataset=data.name, classes=tuple(data.classes)
    )


def erased_cross_validate(
    x: np.ndarray, labels: np.ndarray, folds: Sequence[Fold], kind: str = "logistic", strength: float = 1.0
) -> np.ndarray:
    """Per-fold test accuracy of a probe trained after erasure, with the eraser fitted on the training fold."""
    scores = []
    for train, test in folds:
        leace = fit_leace(x[train], labels[train])
        erased = leace.erase(x)
        scores.append(cross_validate(erased, labels, [(train, test)], kind, strength)[0])
    return np.array(scores)


def _neutral_loss(model: Model, texts: Sequence[str], eraser: ConceptEraser | None) -> float:
    """Mean over texts of each text's mean next-token loss (one padded batch)."""
    run = model.run(list(texts), interventions=[eraser] if eraser is not None else [])
    return float(make_metric(model, "loss")(model, run).mean())


def _downstream_hooks(model: Model, hook: str) -> list[str]:
    """Residual stream after each later block (and after the hook's own block, if the hook precedes it)."""
    spec = model.hook_spec(hook)
    if spec.layer is None:
        return [f"blocks.{layer}.resid_post" for layer in range(model.n_layers)] if hook == "embed" else []
    first = spec.layer + 1 if spec.site == "resid_post" else spec.layer
    return [f"blocks.{layer}.resid_post" for layer in range(first, model.n_layers)]


def _later_hooks(model: Model, hook: str, downstream: bool | Sequence[int]) -> list[str]:
    """The hooks ``erase`` scores with the eraser in the forward pass (its ``downstream`` argument)."""
    later = _downstream_hooks(model, hook) if downstream else []
    if downstream is not True and downstream is not False:
        later = probe_hooks(model, "resid_post", list(downstream))
        if any(model.hooks().index(h) <= model.hooks().index(hook) for h in later):
            raise InputError(f"downstream layers must come after {hook}")
    return later


def _downstream_scores(
    model: Model,
    data: ProbeDataset,
    labels: np.ndarray,
    later: list[str],
    acts: Activations,
    eraser: ConceptEraser,
    folds: Sequence[Fold],
    probe: str,
    strength: float,
    batch_size: int,
) -> list[DownstreamScore]:
    """Probe accuracy at each later hook without and with the eraser in the forward pass (is it recomputed?)."""
    if not later:
        return []
    erased_acts = harvest(model, data, later, batch_size=batch_size, interventions=[eraser], tokenized=acts.examples)
    scores = []
    for h in later:
        clean = cross_validate(acts.values[h], labels, folds, probe, strength).mean()
        scrubbed = cross_validate(erased_acts.values[h], labels, folds, probe, strength).mean()
        scores.append(DownstreamScore(h, float(clean), float(scrubbed)))
    return scores


def erase(
    model: Model,
    dataset: str | Path | ProbeDataset,
    *,
    layer: int | None = None,
    hook: str | None = None,
    site: str = "resid_post",
    position: int | Sequence[int] | None = None,
    probe: str = "logistic",
    strength: float = 1.0,
    n_folds: int = 5,
    seed: int = 0,
    downstream: bool | Sequence[int] = True,
    neutral_texts: Sequence[str] | None = NEUTRAL_TEXTS,
    batch_size: int = 32,
    activations: Activations | None = None,
) -> Erasure:
    """Fit a LEACE eraser at ``hook`` and measure it: probe accuracy before/after, later layers, neutral loss.

    ``downstream``: True scores the residual stream after every later block with the eraser in the forward
    pass, a list of layers picks them, False skips it. ``neutral_texts``: texts for the loss check (None
    skips it). ``activations`` (from ``harvest``, clean) are reused when they hold the hook and the later layers.
    The fitted intervention is ``result.eraser``.
    """
    data = load_probe_dataset(dataset)
    make_probe(probe, strength)
    hook = _erasure_hook(model, layer, hook, site)
    later = _later_hooks(model, hook, downstream)
    needed = [hook, *later]
    if activations is not None and all(h in activations.values for h in needed):
        acts = activations
    else:
        acts = harvest(model, data, needed, batch_size=batch_size)
    labels = class_indices(data)
    groups = acts.examples.groups
    folds = make_folds(labels, groups if len(set(groups)) < len(groups) else None, n_folds, seed)
    x = acts.values[hook].astype(np.float64)
    before = cross_validate(x, labels, folds, probe, strength)
    after = erased_cross_validate(x, labels, folds, probe, strength)
    leace = fit_leace(x, labels)
    erased = leace.erase(x)
    eraser = ConceptEraser(hook, position=position, leace=leace, dataset=data.name, classes=tuple(data.classes))
    scores = _downstream_scores(model, data, labels, later, acts, eraser, folds, probe, strength, batch_size)
    texts = list(neutral_texts or [])
    counts = np.bincount(labels)
    return Erasure(
        model=model.name,
        dataset=data.name,
        hook=hook,
        examples=len(data),
        classes=data.classes,
        rank=leace.rank,
        probe=probe,
        n_folds=len(folds),
        majority=float(counts.max() / counts.sum()),
        chance=1.0 / len(data.classes),
        accuracy_before=float(before.mean()),
        accuracy_before_std=float(before.std()),
        accuracy_after=float(after.mean()),
        accuracy_after_std=float(after.std()),
        cross_covariance_before=float(np.linalg.norm(cross_covariance(x, labels))),
        cross_covariance_after=float(np.linalg.norm(cross_covariance(erased, labels))),
        mean_squared_edit=float(((erased - x) ** 2).sum(1).mean()),
        mean_squared_norm=float(((x - x.mean(0)) ** 2).sum(1).mean()),
        positions="all" if position is None else ", ".join(str(p) for p in as_list(position) or ()),
        downstream=scores,
        neutral_texts=len(texts),
        loss_before=_neutral_loss(model, texts, None) if texts else None,
        loss_after=_neutral_loss(model, texts, eraser) if texts else None,
        eraser=eraser,
    )
