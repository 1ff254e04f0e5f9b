"""The local replacement model: the model on one prompt with every MLP replaced by its transcoder.

On the prompt, each MLP's output is rebuilt as ``transcoder(mlp.in) + error``, where the error node is the
difference the transcoder leaves (a constant taken from the clean pass), so the replacement reproduces the
model's activations and logits on this prompt. Attention patterns and every residual norm's scale are
frozen at their clean values, and the transcoders' feature activations are leaves, so the map from
feature activations, error vectors and token embeddings to any later feature's pre-activation or to a
logit is linear: its derivatives are the graph's direct effects (Ameisen et al. 2025).

``LinearisedPass`` runs that replacement with a batch of identical rows, so one backward pass with a
different seed per row gives the direct effects on many targets at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch

from ...errors import InputError
from ...interventions import Replace
from ...model.linearise import frozen_norms
from ...model.model import Model


class Transcoders(Protocol):
    """What the graph reads from a set of transcoders (``glasslab.dictionaries`` provides ``TranscoderSet``)."""

    n_layers: int

    def input_hook(self, layer: int) -> str: ...

    def output_hook(self, layer: int) -> str: ...

    def d_sae(self, layer: int) -> int: ...

    def encode(self, layer: int, x: torch.Tensor) -> torch.Tensor: ...

    def encoder(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def decoder(self, source_layer: int, target_layer: int) -> torch.Tensor | None: ...

    def output_bias(self, layer: int) -> torch.Tensor: ...

    def skip(self, layer: int) -> torch.Tensor | None: ...

    def reconstruct(self, layer: int, acts_by_layer: Mapping[int, torch.Tensor], x: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class ActiveFeatures:
    """The features active on the prompt at one layer: where, which, and how strongly."""

    layer: int
    positions: torch.Tensor  # [n] long
    features: torch.Tensor  # [n] long
    values: torch.Tensor  # [n] float32 activations

    def __len__(self) -> int:
        return int(self.positions.numel())


@dataclass(frozen=True)
class CleanPass:
    """The model's own pass over the prompt and what the replacement takes from it."""

    tokens: torch.Tensor  # [pos] token ids
    inputs: list[torch.Tensor]  # per layer [pos, d_in]: what the transcoder reads (mlp.in or resid_mid)
    outputs: list[torch.Tensor]  # per layer [pos, d_model]: mlp_out
    active: list[ActiveFeatures]  # per layer
    errors: list[torch.Tensor]  # per layer [pos, d_model]: mlp_out - the transcoders' reconstruction
    last_logits: torch.Tensor  # [vocab] float32 logits at the last position
    last_final: torch.Tensor  # [d_model] float32 final norm output at the last position (what logits read)
    first_position_constant: bool  # the BOS position's MLP writes are constants, not nodes

    @property
    def n_positions(self) -> int:
        return int(self.tokens.numel())


INPUT_SITES = ("mlp.in", "resid_mid")  # what a transcoder may read: the MLP's input, or the residual before its norm


def check_transcoders(model: Model, transcoders: Transcoders) -> None:
    """Refuse, in one line, transcoders made for another model or reading other hooks."""
    if transcoders.n_layers != model.n_layers:
        raise InputError(
            f"the transcoders cover {transcoders.n_layers} layers but {model.name} has {model.n_layers}; "
            "use transcoders made for this model"
        )
    for layer in range(model.n_layers):
        read, write = transcoders.input_hook(layer), transcoders.output_hook(layer)
        reads = {
            f"blocks.{layer}.{site}" for site in INPUT_SITES if not (site == "resid_mid" and model.parallel_residual)
        }
        if read not in reads or write != f"blocks.{layer}.mlp_out":
            raise InputError(
                f"layer {layer}'s transcoder reads {read} and writes {write}; an attribution graph needs "
                f"transcoders from blocks.{layer}.mlp.in (or resid_mid) to blocks.{layer}.mlp_out"
            )


def clean_pass(model: Model, tokens: torch.Tensor, transcoders: Transcoders) -> CleanPass:
    """Run the prompt once; encode each layer's MLP input and keep what the transcoders miss as errors.

    At a BOS first position every layer's MLP write is the same whatever the prompt (an attention sink), so
    there its features are not nodes and its whole write, features included, is a constant error term
    whose edges are left out (as circuit-tracer does).
    """
    layers = range(model.n_layers)
    reads = [transcoders.input_hook(layer) for layer in layers]
    names = reads + [f"blocks.{layer}.mlp_out" for layer in layers] + ["ln_final"]
    bos = model.tokenizer.bos_token_id
    first_constant = bos is not None and int(tokens[0]) == bos and tokens.numel() > 1
    with torch.no_grad():
        run = model.run(tokens[None], cache=names)
        inputs = [run.cache[reads[layer]][0].float() for layer in layers]
        outputs = [run.cache[f"blocks.{layer}.mlp_out"][0].float() for layer in layers]
        acts = [transcoders.encode(layer, inputs[layer]).float() for layer in layers]
        if first_constant:
            for layer_acts in acts:
                layer_acts[0] = 0.0
        errors = []
        for layer in layers:
            sources = {source: acts[source] for source in range(layer + 1)}
            errors.append(outputs[layer] - transcoders.reconstruct(layer, sources, inputs[layer]).float())
    active = [_active(layer, acts[layer]) for layer in layers]
    last = (run.logits[0, -1].float(), run.cache["ln_final"][0, -1].float())
    return CleanPass(tokens, inputs, outputs, active, errors, *last, first_constant)


def _active(layer: int, acts: torch.Tensor) -> ActiveFeatures:
    positions, features = torch.nonzero(acts, as_tuple=True)
    return ActiveFeatures(layer, positions, features, acts[positions, features])


class LinearisedPass:
    """The frozen local replacement model run on ``batch`` copies of the prompt, keeping the graph.

    Leaves: ``features[L]`` [batch, n_active_L] (the activations, as values), ``errors[L]`` [batch, pos,
    d_model] and ``embed`` [batch, pos, d_model]. Readouts: ``inputs[L]`` (each layer's mlp.in, which
    feature pre-activations read) and ``final`` (the final norm's output, which logits read).
    """

    def __init__(self, model: Model, clean: CleanPass, transcoders: Transcoders, batch: int) -> None:
        self.model, self.clean, self.transcoders, self.batch = model, clean, transcoders, batch
        dtype = next(model.hf.parameters()).dtype
        self.features = [a.values.to(dtype).expand(batch, -1).clone().requires_grad_(True) for a in clean.active]
        self.errors = [e.to(dtype).expand(batch, -1, -1).clone().requires_grad_(True) for e in clean.errors]
        self.inputs: dict[int, torch.Tensor] = {}
        self._spread_cache: dict[int, torch.Tensor] = {}
        self._decoders = self._decoder_rows()
        interventions = [Replace("blocks.*.attn.pattern", fn=lambda pattern: pattern.detach())]
        for layer in range(model.n_layers):
            read = transcoders.input_hook(layer)
            interventions.append(Replace(read, fn=self._keep_input(layer, detach=read.endswith("mlp.in"))))
            interventions.append(Replace(f"blocks.{layer}.mlp_out", fn=self._replacement_output(layer)))
        tokens = clean.tokens[None].expand(batch, -1)
        with torch.enable_grad(), frozen_norms(model):
            run = model.run(tokens, cache=["embed", "ln_final"], interventions=interventions, logits=False, grad=True)
        self.embed = run.cache["embed"]
        self.final = run.cache["ln_final"]

    def _decoder_rows(self) -> dict[tuple[int, int], torch.Tensor]:
        """(source, target) -> [n_active_source, d_model]: each active feature's write into the target layer."""
        rows = {}
        dtype = next(self.model.hf.parameters()).dtype
        for target in range(self.model.n_layers):
            for source in range(target + 1):
                decoder = self.transcoders.decoder(source, target)
                if decoder is not None and len(self.clean.active[source]):
                    rows[source, target] = decoder[self.clean.active[source].features].to(dtype)
        return rows

    def _spread(self, source: int) -> torch.Tensor:
        """[batch, pos, n_active_source]: each active feature's activation at its own position, zero elsewhere.

        Decoding is then one matrix product with the decoder rows, whose backward is a matrix product too
        (far faster than scattering a [batch, n_active, d_model] tensor of writes)."""
        spread = self._spread_cache.get(source)
        if spread is None:
            active = self.clean.active[source]
            at_position = torch.zeros(self.clean.n_positions, len(active), dtype=self.features[source].dtype)
            at_position[active.positions, torch.arange(len(active))] = 1.0
            spread = self._spread_cache[source] = self.features[source][:, None, :] * at_position[None]
        return spread

    def _keep_input(self, layer: int, *, detach: bool):
        def keep(x: torch.Tensor) -> torch.Tensor:
            self.inputs[layer] = x
            # The real MLP's output is replaced, so no gradient need flow into it; the residual stream
            # (resid_mid) flows on and keeps its graph.
            return x.detach() if detach else x

        return keep

    def _replacement_output(self, layer: int):
        def replace(original: torch.Tensor) -> torch.Tensor:
            out = self.errors[layer] + self.transcoders.output_bias(layer).to(original.dtype)
            for (source, target), rows in self._decoders.items():
                if target == layer:
                    out = out + self._spread(source) @ rows
            skip = self.transcoders.skip(layer)
            if skip is not None:
                out = out + self.inputs[layer] @ skip.to(original.dtype)
            return out

        return replace

    def logits(self, directions: torch.Tensor) -> torch.Tensor:
        """[batch, n]: the last position's readout along each column of ``directions`` [d_model, n]."""
        return self.final[:, -1] @ directions.to(self.final.dtype)
