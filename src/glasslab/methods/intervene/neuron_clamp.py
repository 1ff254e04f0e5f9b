"""Neuron clamping during generation: set MLP neurons to a value, scale them, or zero them, and compare
the continuation with the model's own.

Both generations go through ``model.generate(..., interventions=[...])``: the clamp is a ``gl.Clamp``
(value, zero) or a ``gl.Replace`` multiplying the neurons (scale) on ``blocks.{L}.mlp.post``, and an
identity ``gl.Replace`` placed after it records the neurons' values at every position the model reads
(the prompt and each generated token but the last, which is never fed back).

Positions are absolute; a negative one counts from the end of the prompt (``-1``: its last token). With
no positions the clamp acts on every prompt token and every generated token.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ...errors import InputError
from ...interventions import Clamp, Intervention, Replace
from ...model.generation import Generation
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Figure, Heatmap
from ...views.result import Result

Mode = Literal["value", "scale", "zero"]


@dataclass(frozen=True)
class NeuronClamp(Result):
    kind = "neuron_clamp"

    model: str
    prompt: str
    neurons: list[str]  # "L5.N120"
    mode: str  # "value", "scale" or "zero"
    amount: float  # the value or the factor (0 for zero)
    positions: list[int] | None  # None = every position
    prompt_tokens: int
    baseline: str  # continuation without the clamp
    clamped: str  # continuation with it
    baseline_tokens: list[str]  # prompt tokens + new tokens
    clamped_tokens: list[str]
    first_difference: int | None  # index of the first new token that differs; None if the texts agree
    baseline_values: list[list[float]]  # [neuron][position] activation in the baseline generation
    clamped_values: list[list[float]]  # [neuron][position] value after the clamp in the clamped generation

    def describe(self) -> str:
        change = {"value": f"set to {self.amount:g}", "scale": f"scaled by {self.amount:g}", "zero": "zeroed"}
        where = "every position" if self.positions is None else f"positions {', '.join(map(str, self.positions))}"
        return f"{', '.join(self.neurons)} {change[self.mode]} at {where}"

    def figure(self) -> Figure:
        panels = [
            Heatmap(
                f"neuron values, {name} generation",
                values,
                self.neurons,
                [f"{i} {t!r}" for i, t in enumerate(tokens[: len(values[0])])],
                row_title="neuron",
                col_title="position (token read there)",
                value_label="activation",
                cell_text=[[f"{v:.2f}" for v in row] for row in values],
            )
            for name, values, tokens in (
                ("baseline", self.baseline_values, self.baseline_tokens),
                ("clamped", self.clamped_values, self.clamped_tokens),
            )
        ]
        return Figure(
            f"{self.model}: {self.describe()}",
            panels,
            **explanation("neuron_clamp"),
            extra={
                "prompt": self.prompt,
                "baseline": self.baseline,
                "clamped": self.clamped,
                "first difference": "none" if self.first_difference is None else f"new token {self.first_difference}",
            },
        )


class _Recorder:
    """Identity function for a ``Replace``: keeps the chosen neurons' values of each forward pass."""

    def __init__(self, neurons: list[int]) -> None:
        self.neurons = neurons
        self.pieces: list[torch.Tensor] = []

    def __call__(self, act: torch.Tensor) -> torch.Tensor:
        self.pieces.append(act[0, :, self.neurons].float().cpu())
        return act

    def values(self) -> torch.Tensor:
        """[neuron, position]."""
        return torch.cat(self.pieces).T


def clamp_interventions(
    neurons: Sequence[tuple[int, int]], mode: Mode, amount: float, positions: Sequence[int] | None = None
) -> list[Intervention]:
    """The clamp as interventions on ``mlp.post``, one per layer: usable in any run or generation."""
    by_layer: dict[int, list[int]] = defaultdict(list)
    for layer, neuron in neurons:
        by_layer[layer].append(neuron)
    where = list(positions) if positions is not None else None
    out: list[Intervention] = []
    for layer, chosen in by_layer.items():
        hook = f"blocks.{layer}.mlp.post"
        if mode == "scale":
            out.append(Replace(hook, neuron=chosen, position=where, fn=lambda act, s=amount: act * s))
        else:
            out.append(Clamp(hook, neuron=chosen, position=where, value=0.0 if mode == "zero" else amount))
    return out


def clamp_neurons(
    model: Model,
    prompt: str,
    neurons: Sequence[tuple[int, int]],
    *,
    value: float | None = None,
    scale: float | None = None,
    zero: bool = False,
    positions: Sequence[int] | None = None,
    max_new_tokens: int = 20,
    temperature: float = 0.0,
    seed: int | None = None,
) -> NeuronClamp:
    """Generate with and without the neurons (layer, neuron) clamped; exactly one of ``value``, ``scale``
    and ``zero``. Sampling (``temperature > 0``) uses ``seed`` for both, so they start alike."""
    if sum((value is not None, scale is not None, bool(zero))) != 1:
        raise InputError("choose exactly one of value=..., scale=... or zero=True")
    neurons = [(int(layer), int(neuron)) for layer, neuron in neurons]
    if not neurons:
        raise InputError("no neurons given; name at least one as (layer, neuron)")
    for layer, neuron in neurons:
        if not 0 <= layer < model.n_layers:
            raise InputError(f"layer {layer} is out of range (valid: 0..{model.n_layers - 1})")
        if not 0 <= neuron < model.d_mlp:
            raise InputError(f"neuron {neuron} is out of range (valid: 0..{model.d_mlp - 1})")
    mode: Mode = "zero" if zero else ("value" if value is not None else "scale")
    amount = 0.0 if zero else float(value if value is not None else scale)
    clamps = clamp_interventions(neurons, mode, amount, positions)
    options = dict(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)

    def generate(extra: list[Intervention]) -> tuple[Generation, torch.Tensor]:
        recorders = {layer: _Recorder(sorted({n for ly, n in neurons if ly == layer})) for layer, _ in neurons}
        watch = [Replace(f"blocks.{layer}.mlp.post", fn=r) for layer, r in recorders.items()]
        generation = model.generate(prompt, interventions=[*extra, *watch], **options)
        recorded = {layer: r.values() for layer, r in recorders.items()}
        rows = [recorded[layer][recorders[layer].neurons.index(neuron)] for layer, neuron in neurons]
        return generation, torch.stack(rows)

    base, base_values = generate([])
    clamped, clamped_values = generate(clamps)
    prompt_tokens = model.to_str_tokens(prompt)
    first = next(
        (i for i, (a, b) in enumerate(zip(base.new_tokens, clamped.new_tokens, strict=False)) if a != b),
        None if len(base.new_tokens) == len(clamped.new_tokens) else min(len(base.new_tokens), len(clamped.new_tokens)),
    )
    return NeuronClamp(
        model=model.name,
        prompt=prompt,
        neurons=[f"L{layer}.N{neuron}" for layer, neuron in neurons],
        mode=mode,
        amount=amount,
        positions=list(positions) if positions is not None else None,
        prompt_tokens=len(prompt_tokens),
        baseline=base.completion,
        clamped=clamped.completion,
        baseline_tokens=prompt_tokens + base.new_tokens,
        clamped_tokens=prompt_tokens + clamped.new_tokens,
        first_difference=first,
        baseline_values=base_values.tolist(),
        clamped_values=clamped_values.tolist(),
    )
