"""How good is a set of transcoders? Per layer, how much of the MLP output's variance it predicts; for the
whole model, how much of the next-token loss survives when every MLP is replaced by its transcoder at once.

On held-out text (the corpus's ``test`` split by default):

- per layer: fraction of variance explained, ``1 - sum ||y - y_hat||^2 / sum ||y - mean(y)||^2`` with ``y``
  the MLP's output (``blocks.L.mlp_out``) and ``y_hat`` the transcoder's prediction from the same token's
  ``blocks.L.mlp.in``, pooled over tokens; L0 (active features per token) and dead features (never active);
- loss recovered, ``(L_ablated - L_replaced) / (L_ablated - L_clean)``, where ``L_replaced`` is the loss
  with every layer's ``mlp_out`` replaced by its transcoder's prediction from that same (replaced) run's
  ``mlp.in``, so errors compound through the layers as they do in a replacement model, and ``L_ablated``
  has every MLP output zero- or mean-ablated (both reported).

BOS keeps the model's own MLP outputs in every variant (transcoders are trained without it), and the loss
is taken on predictions from position 1 on, as for SAEs (``evaluate.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from ...data import batches, load_corpus, packed_sequences
from ...dictionaries.activations import rows_per_sequence
from ...dictionaries.transcoder_set import TranscoderSet
from ...dictionaries.transcoder_train import TranscodersStream
from ...errors import InputError
from ...interventions import Replace
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Bars, Figure
from ...views.result import Result
from .evaluate import next_token_loss

Predict = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]
"""(layer, mlp.in, mlp_out) -> the MLP output to put in its place (all [batch, pos, d_model])."""


@dataclass(frozen=True)
class LayerFit:
    """One layer's transcoder on held-out tokens."""

    layer: int
    fve: float
    mse: float  # mean squared prediction error per token (raw units)
    l0: float
    dead_fraction: float


@dataclass(frozen=True)
class TranscoderEvaluation(Result):
    """A transcoder set's quality on held-out text."""

    kind = "transcoder_evaluation"
    json_keys = (
        "model", "corpus", "tokens", "loss_tokens", "layers", "loss_clean", "loss_replaced", "loss_zero_ablation",
        "loss_mean_ablation", "loss_recovered_zero", "loss_recovered_mean",
    )  # fmt: skip

    model: str
    corpus: str
    tokens: int  # tokens the per-layer figures read
    loss_tokens: int  # predictions the losses read
    layers: tuple[LayerFit, ...]
    loss_clean: float
    loss_replaced: float  # every MLP replaced by its transcoder at once
    loss_zero: float  # every MLP output zero-ablated
    loss_mean: float  # every MLP output mean-ablated

    @property
    def loss_recovered_zero(self) -> float:
        return recovered(self.loss_zero, self.loss_replaced, self.loss_clean)

    @property
    def loss_recovered_mean(self) -> float:
        return recovered(self.loss_mean, self.loss_replaced, self.loss_clean)

    def _json_loss_zero_ablation(self) -> float:
        return self.loss_zero

    def _json_loss_mean_ablation(self) -> float:
        return self.loss_mean

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TranscoderEvaluation:
        """The evaluation from its JSON (as ``training.json`` keeps it)."""
        return cls(
            model=data["model"],
            corpus=data["corpus"],
            tokens=data["tokens"],
            loss_tokens=data["loss_tokens"],
            layers=tuple(LayerFit(**fit) for fit in data["layers"]),
            loss_clean=_number(data["loss_clean"]),
            loss_replaced=_number(data["loss_replaced"]),
            loss_zero=_number(data["loss_zero_ablation"]),
            loss_mean=_number(data["loss_mean_ablation"]),
        )

    def figure(self) -> Figure:
        """Per-layer FVE bars, then the losses with every MLP replaced."""
        losses = ["clean model", "every MLP replaced", "mean-ablated", "zero-ablated"]
        return Figure(
            title=f"Transcoder set quality on {self.model} ({len(self.layers)} layers)",
            panels=[
                Bars(
                    "Fraction of the MLP output's variance each layer's transcoder explains",
                    [f"layer {fit.layer}" for fit in self.layers],
                    [fit.fve for fit in self.layers],
                    "fraction",
                    hover=[f"L0 {fit.l0:.1f}, dead {fit.dead_fraction:.1%}" for fit in self.layers],
                ),
                Bars(
                    "Next-token loss on held-out text",
                    losses,
                    [self.loss_clean, self.loss_replaced, self.loss_mean, self.loss_zero],
                    "nats per token",
                ),
            ],
            **explanation(self.kind, tokens=self.tokens, loss_tokens=self.loss_tokens, corpus=self.corpus),
            extra={
                "loss recovered (mean)": f"{self.loss_recovered_mean:.3f}",
                "loss recovered (zero)": f"{self.loss_recovered_zero:.3f}",
            },
        )


def _number(value: float | None) -> float:
    """A loss as JSON keeps it: null (not measured) back to NaN."""
    return math.nan if value is None else float(value)


def recovered(ablated: float, replaced: float, clean: float) -> float:
    gap = ablated - clean
    return (ablated - replaced) / gap if abs(gap) > 1e-12 else math.nan


def evaluate_transcoders(
    model: Model,
    transcoders: TranscoderSet,
    *,
    corpus: str = "builtin",
    tokens: int = 16384,
    loss_tokens: int = 2048,
    seq_len: int = 128,
    batch_size: int = 8,
    documents: Iterable[str] | None = None,
) -> TranscoderEvaluation:
    """Evaluate ``transcoders`` on ``tokens`` held-out tokens (per-layer figures) and ``loss_tokens``
    (losses, four full passes each), in sequences of ``seq_len``."""
    transcoders.check_fits(model)
    if tokens < 1 or loss_tokens < 0:
        raise InputError(f"evaluate on at least one token (got tokens={tokens}, loss_tokens={loss_tokens})")
    seq_len = min(seq_len, model.context_length or seq_len)
    docs = documents if documents is not None else load_corpus(corpus, split="test")
    layers = tuple(transcoders.layers)
    stream = TranscodersStream(
        model,
        "blocks.*.mlp.in",
        docs,
        seq_len,
        batch_size,
        max_rows=max(tokens, rows_per_sequence(model, seq_len)),
        layers=layers,
    )
    fits, means, n = _layer_fits(transcoders, stream)
    if n == 0:
        raise InputError("the evaluation text gave no tokens; use a corpus with a test split that has text")
    losses, counted = dict.fromkeys(("clean", "replaced", "zero", "mean"), math.nan), 0
    if loss_tokens:
        variants: dict[str, Predict | None] = {
            "clean": None,
            "replaced": lambda layer, x, y: transcoders[layer](x.float()),
            "zero": lambda layer, x, y: torch.zeros_like(y),
            "mean": lambda layer, x, y: means[layer].to(y.device, y.dtype).expand_as(y),
        }
        totals = dict.fromkeys(variants, 0.0)
        sequences = packed_sequences(
            model, docs, seq_len, limit=math.ceil(loss_tokens / rows_per_sequence(model, seq_len))
        )
        for batch in batches(sequences, batch_size):
            for key, predict in variants.items():
                edits = [] if predict is None else replace_mlps(layers, predict)
                total, count = next_token_loss(model, batch, edits)
                totals[key] += total
            counted += count
        losses = {key: total / max(counted, 1) for key, total in totals.items()}
    return TranscoderEvaluation(
        model=model.name,
        corpus=load_corpus(corpus).describe() + " test split" if documents is None else "given text",
        tokens=n,
        loss_tokens=counted,
        layers=fits,
        loss_clean=losses["clean"],
        loss_replaced=losses["replaced"],
        loss_zero=losses["zero"],
        loss_mean=losses["mean"],
    )


def replace_mlps(layers: Iterable[int], predict: Predict, *, keep_error: bool = False) -> list[Replace]:
    """Interventions that replace ``blocks.L.mlp_out`` by ``predict(L, mlp.in, mlp_out)`` at every listed
    layer (after BOS), reading ``mlp.in`` from the same run. ``keep_error`` adds back what the prediction
    misses, ``mlp_out - predict(...)`` (the replacement model's error terms): the model is then unchanged."""
    inputs: dict[int, torch.Tensor] = {}
    edits = []
    for layer in layers:

        def capture(act: torch.Tensor, layer: int = layer) -> torch.Tensor:
            inputs[layer] = act
            return act

        def replaced(act: torch.Tensor, layer: int = layer) -> torch.Tensor:
            new = predict(layer, inputs.pop(layer), act).to(act.dtype)
            if keep_error:
                new = new + (act - new)
            return torch.cat([act[:, :1], new[:, 1:]], dim=1)

        edits += [Replace(f"blocks.{layer}.mlp.in", fn=capture), Replace(f"blocks.{layer}.mlp_out", fn=replaced)]
    return edits


@torch.inference_mode()
def _layer_fits(
    transcoders: TranscoderSet, stream: TranscodersStream
) -> tuple[tuple[LayerFit, ...], dict[int, torch.Tensor], int]:
    """Each layer's FVE, MSE, L0 and dead fraction, its mean MLP output, and the tokens read.

    Variances are accumulated around the first chunk's mean (then corrected), in float64."""
    acc: dict[int, dict[str, Any]] = {}
    n = 0
    for rows in stream.rows():
        if rows.shape[0] == 0:
            continue
        n += rows.shape[0]
        for index, layer in enumerate(stream.layers):
            x, y = stream.pair(rows, index)
            transcoder = transcoders[layer]
            features = transcoder.encode(x)
            predicted = transcoder.decode(features) + transcoder.skip(x)
            a = acc.setdefault(layer, {"shift": y.double().mean(0), "err": 0.0, "active": 0, "sum": 0.0, "sq": 0.0})
            a["fired"] = a.get("fired", 0) + (features > 0).sum(0)
            a["active"] += int((features > 0).sum())
            a["err"] += float((y - predicted).double().pow(2).sum())
            centred = y.double() - a["shift"]
            a["sum"] = a["sum"] + centred.sum(0)
            a["sq"] += float(centred.pow(2).sum())
    fits, means = [], {}
    for layer, a in acc.items():
        variance = a["sq"] - float(a["sum"].pow(2).sum()) / n
        fits.append(
            LayerFit(
                layer=layer,
                fve=1 - a["err"] / variance if variance > 0 else math.nan,
                mse=a["err"] / n,
                l0=a["active"] / n,
                dead_fraction=float((a["fired"] == 0).double().mean()),
            )
        )
        means[layer] = (a["shift"] + a["sum"] / n).float()
    return tuple(fits), means, n
