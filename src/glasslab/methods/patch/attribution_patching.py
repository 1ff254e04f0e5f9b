"""Attribution patching (Nanda 2023; Syed et al. 2023, arXiv:2310.10348): activation patching by gradient.

Patching cell ``c`` replaces the activation ``a`` of the patched run by the source's ``a'``. To first
order the metric then moves by ``(a' - a) · dM/da``, with the gradient taken on the patched run. One
forward and one backward pass of that run give the gradient at every site and layer, so a whole sweep
costs a constant number of passes (the clean and corrupted forwards plus one forward and backward),
whatever the number of cells. Cells, tables and normalisation are those of activation patching
(``patching.py``); ``compare=True`` also runs the real sweep and reports the Pearson correlation of
the two over the cells.

The approximation is good where the metric is close to linear in the activation (small patches, late
layers, per-head outputs) and poor where a patch moves the run far (the residual stream at the
position where the prompts differ, attention patterns that saturate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...interventions.values import Replace
from ...model.model import Model
from ...views.explanations import explanation, note
from ...views.figures import Figure
from ..metrics import Metric
from .patching import ActivationPatching, Align, PatchTable, PositionChoice, Prompt, prepare_sweep, run_sweep


@dataclass(frozen=True)
class AttributionPatching(PatchTable):
    """Estimated metric after patching each cell (first-order), optionally beside the real sweep."""

    kind = "attribution_patching"
    json_keys = (*PatchTable.json_keys, "real", "correlation")

    real: ActivationPatching | None = None
    correlation: float | None = None  # Pearson over cells, estimate vs real (raw metric)

    def figure(self) -> Figure:
        panels = [self.heatmap(f"{self.metric}, normalised: gradient estimate")]
        if self.real is not None:
            panels.append(self.real.heatmap(f"{self.metric}, normalised: real patching"))
        extra = self.facts() | ({"correlation with real": f"{self.correlation:.3f}"} if self.real else {})
        return Figure(
            f"{self.model}: attribution patching of {self.where()} ({self.mode})",
            panels,
            **explanation(
                "attribution_patching", real=note("attribution_patching", "real") if self.real is not None else ""
            ),
            extra=extra,
        )


def attribution_patching(
    model: Model,
    clean: Prompt,
    corrupted: Prompt,
    *,
    target: str | int | None = None,
    versus: str | int | None = None,
    metric: str | Metric | None = None,
    site: str = "resid_pre",
    position: PositionChoice = None,
    layers: Sequence[int] | None = None,
    noising: bool = False,
    align: Align = None,
    compare: bool = False,
    batch_size: int | None = None,
) -> AttributionPatching:
    """First-order estimate of ``activation_patching`` with the same arguments, in constant passes.

    ``compare=True`` also runs the real (batched) sweep and reports the correlation over cells.
    """
    sweep = prepare_sweep(
        model,
        clean,
        corrupted,
        target=target,
        versus=versus,
        metric=metric,
        site=site,
        position=position,
        layers=layers,
        noising=noising,
        align=align,
    )
    hooks = [sweep.hook(layer) for layer in sweep.layers]
    # A copy at each site puts the cached tensor itself on the path to the output (some sites, such as
    # head_out or resid_mid, are otherwise read off the graph's side).
    copies = [Replace(hook, fn=torch.clone) for hook in hooks]
    with torch.enable_grad():
        run = model.run(sweep.base.tokens, cache=hooks, grad=True, interventions=copies)
        value = sweep.metric(model, run).sum()
        grads = torch.autograd.grad(value, [run.cache[hook] for hook in hooks])
    masks = [sweep.cell_mask(column) for column in sweep.columns]
    effects = []
    with torch.no_grad():
        for layer, hook, grad in zip(sweep.layers, hooks, grads, strict=True):
            product = ((sweep.aligned_source(layer) - sweep.base.cache[hook]) * grad)[0].float()
            effects.extend(float((product * mask.to(product.device)).sum()) for mask in masks)
    estimate = torch.tensor(effects, dtype=torch.float64) + sweep.base_value
    raw, norm = sweep.table(estimate)
    real, correlation = None, None
    if compare:  # the real sweep on the same prepared runs: no second clean/corrupted pass
        values, passes = run_sweep(sweep, batch_size)
        real = ActivationPatching(**sweep.result_fields(*sweep.table(values), passes))
        correlation = pearson(estimate, values.to(torch.float64))
    # Passes: the clean and corrupted forwards, then one forward and one backward of the patched run.
    return AttributionPatching(**sweep.result_fields(raw, norm, 3), real=real, correlation=correlation)


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation (NaN when either side is constant)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0 else float("nan")
