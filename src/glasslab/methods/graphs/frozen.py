"""The frozen local replacement model as a model one can run with changed features: the graph's own check.

Attention patterns are the clean pass's, every residual norm uses the clean pass's scale (as values, not
only for gradients), and every MLP's output is ``transcoders' reconstruction + the clean error``. Feature
activations are either **held** (the clean activations with the given overrides: the graph's direct
effects are exactly the changes this gives), **linear** (each active feature moves by exactly the change
of its pre-activation, inactive ones stay silent: the graph's path sums are exactly the changes this
gives), or **recomputed** from each layer's input through the transcoder's nonlinearity (with the
overrides forced): how the frozen replacement really responds.
``model_response`` runs the real model instead, with the feature's write added to the MLP's output and
attention, norms and MLPs free to react.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch

from ...interventions import Replace
from ...model.linearise import fixed_norms, recorded_norm_scales
from ...model.model import Model
from .replacement import CleanPass, Transcoders

# (layer, position, feature) -> the activation to force
Overrides = Mapping[tuple[int, int, int], float]


class FrozenReplacement:
    """The local replacement model of one prompt with everything but the features frozen at clean values."""

    def __init__(self, model: Model, clean: CleanPass, transcoders: Transcoders) -> None:
        self.model, self.clean, self.transcoders = model, clean, transcoders
        patterns = [f"blocks.{layer}.attn.pattern" for layer in range(model.n_layers)]
        with torch.no_grad(), recorded_norm_scales(model) as scales:
            run = model.run(clean.tokens[None], cache=patterns)
        self.patterns = {name: run.cache[name] for name in patterns}
        self.scales = dict(scales)

    def clean_activations(self, layer: int) -> torch.Tensor:
        """[pos, d_sae] the clean pass's activations at ``layer``."""
        active = self.clean.active[layer]
        acts = torch.zeros(self.clean.n_positions, self.transcoders.d_sae(layer))
        acts[active.positions, active.features] = active.values
        return acts

    def run(
        self, overrides: Overrides, mode: Literal["held", "linear", "recomputed"]
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(per layer [pos, d_sae] pre-activations, [d_model] final norm output at the last position)."""
        inputs: dict[int, torch.Tensor] = {}
        acts: dict[int, torch.Tensor] = {}
        interventions = [Replace(name, fn=_constant(pattern)) for name, pattern in self.patterns.items()]
        for layer in range(self.model.n_layers):
            interventions.append(Replace(self.transcoders.input_hook(layer), fn=_keeper(inputs, layer)))
            interventions.append(
                Replace(f"blocks.{layer}.mlp_out", fn=self._output(layer, inputs, acts, overrides, mode))
            )
        with torch.no_grad(), fixed_norms(self.model, self.scales):
            run = self.model.run(self.clean.tokens[None], cache=["ln_final"], interventions=interventions, logits=False)
        pre = []
        for layer in range(self.model.n_layers):
            encoder, bias = self.transcoders.encoder(layer)
            pre.append(inputs[layer] @ encoder.float() + bias.float())
        return pre, run.cache["ln_final"][0, -1].float()

    def _output(self, layer: int, inputs: dict, acts: dict, overrides: Overrides, mode: str):
        def replace(original: torch.Tensor) -> torch.Tensor:
            x = inputs[layer]
            current = self._activations(layer, x, mode)
            for (at_layer, position, feature), value in overrides.items():
                if at_layer == layer:
                    current[position, feature] = value
            acts[layer] = current
            sources = {source: acts[source] for source in range(layer + 1)}
            out = self.transcoders.reconstruct(layer, sources, x).float() + self.clean.errors[layer]
            return out[None].to(original.dtype)

        return replace

    def _activations(self, layer: int, x: torch.Tensor, mode: str) -> torch.Tensor:
        if mode == "recomputed":
            return self.transcoders.encode(layer, x).float()
        current = self.clean_activations(layer)
        if mode == "linear":
            encoder, _bias = self.transcoders.encoder(layer)
            active = self.clean.active[layer]
            moved = (x - self.clean.inputs[layer]) @ encoder.float()
            current[active.positions, active.features] += moved[active.positions, active.features]
        return current


def _keeper(inputs: dict[int, torch.Tensor], layer: int):
    def keep(x: torch.Tensor) -> torch.Tensor:
        inputs[layer] = x[0].float()
        return x

    return keep


def _constant(value: torch.Tensor):
    return lambda _original: value


def model_response(model: Model, clean: CleanPass, transcoders: Transcoders, overrides: Overrides) -> torch.Tensor:
    """[d_model] the real model's final norm output at the last position when each overridden feature's write
    (its activation change times its decoder rows, into every layer it writes to) is added to the MLP outputs;
    attention, norms and the real MLPs react freely."""
    changes: dict[int, torch.Tensor] = {}
    for (layer, position, feature), value in overrides.items():
        delta = value - float(_clean_value(clean, layer, position, feature))
        for target in range(layer, model.n_layers):
            decoder = transcoders.decoder(layer, target)
            if decoder is not None:
                change = changes.setdefault(target, torch.zeros(clean.n_positions, decoder.shape[1]))
                change[position] += delta * decoder[feature].float()
    interventions = [
        Replace(f"blocks.{layer}.mlp_out", fn=lambda out, change=change: out + change[None].to(out.dtype))
        for layer, change in changes.items()
    ]
    with torch.no_grad():
        run = model.run(clean.tokens[None], cache=["ln_final"], interventions=interventions, logits=False)
    return run.cache["ln_final"][0, -1].float()


def _clean_value(clean: CleanPass, layer: int, position: int, feature: int) -> float:
    active = clean.active[layer]
    hit = (active.positions == position) & (active.features == feature)
    return float(active.values[hit][0]) if bool(hit.any()) else 0.0
