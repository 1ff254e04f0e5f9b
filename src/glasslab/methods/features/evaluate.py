"""How good is an SAE? Sparsity, reconstruction and what the model loses when it reads the SAE instead.

On held-out text (the corpus's ``test`` split, never seen in training):

- L0: active features per token.
- FVE, the fraction of variance explained: ``1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2``.
- loss recovered: the model's next-token loss with the SAE's reconstruction spliced in at the hook
  (``L_spliced``), against the clean model (``L_clean``) and against the hook zero- or mean-ablated
  (``L_ablated``): ``(L_ablated - L_spliced) / (L_ablated - L_clean)``; 1 means nothing is lost, 0 that
  the SAE is as bad as deleting the activation. Both ablations are reported (mean ablation is the
  stricter baseline: it already keeps the average direction).
- dead features (never active on the evaluated tokens) and dense ones (active on more than 10%).

BOS keeps the model's own activation in every variant (SAEs are trained without it, see
``activations.py``), and the loss is taken only on predictions made after the hook was changed (from
position 1 on); every variant runs on exactly the same token positions as the clean model. Activation
metrics read many tokens cheaply (the forward pass stops at the hook); the loss needs four full passes
with the unembedding, so it reads fewer (``loss_tokens``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ...data import batches, load_corpus, packed_sequences
from ...dictionaries import SAE
from ...dictionaries.activations import ActivationStream, rows_per_sequence
from ...dictionaries.fit import check_fits
from ...errors import InputError
from ...model.hooks import ApplyContext, Layout
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Bars, Figure
from ...views.result import Result

DENSE_THRESHOLD = 0.1  # a feature active on more than this fraction of tokens counts as dense
_CHUNK = 256  # rows decoded over the full vocabulary at once


@dataclass(frozen=True, eq=False)
class AfterBOS:
    """Replace a hook's activation with ``fn(activation)`` at every position except BOS (position 0).

    A minimal splice for evaluation: ``fn`` gets and returns the SAE-shaped activation [..., d_in].
    """

    hook: str
    sae: SAE
    fn: Callable[[torch.Tensor], torch.Tensor]

    def apply(self, act: torch.Tensor, layout: Layout, ctx: ApplyContext) -> torch.Tensor:
        new = self.sae.write(self.fn(self.sae.read(act).float()), act)
        if ctx.offset == 0:
            new = torch.cat([act[:, :1], new[:, 1:]], dim=1)
        return new

    def check_index(self, hook_name: str, layout: Layout, sizes: dict[str, int]) -> None:
        return None

    def check_positions(self, prompt_lengths: torch.Tensor, max_length: int) -> None:
        return None


def splice(sae: SAE) -> AfterBOS:
    """The SAE's reconstruction in place of the activation (after BOS)."""
    return AfterBOS(sae.hook, sae, lambda x: sae(x))


@dataclass(frozen=True)
class SAEEvaluation(Result):
    """An SAE's quality on held-out text."""

    kind = "sae_evaluation"
    json_keys = (
        "model", "hook", "architecture", "d_sae", "corpus", "tokens", "loss_tokens", "l0", "fve", "mse",
        "dead_fraction", "dense_fraction", "loss_clean", "loss_spliced", "loss_zero_ablation", "loss_mean_ablation",
        "loss_recovered_zero", "loss_recovered_mean",
    )  # fmt: skip

    model: str
    hook: str
    architecture: str
    d_sae: int
    corpus: str
    tokens: int  # tokens the activation metrics read
    loss_tokens: int  # tokens the loss metrics read (predictions)
    l0: float
    fve: float
    mse: float  # mean squared reconstruction error per token (raw units)
    dead_fraction: float
    dense_fraction: float
    loss_clean: float
    loss_spliced: float
    loss_zero: float
    loss_mean: float

    @property
    def loss_recovered_zero(self) -> float:
        return _recovered(self.loss_zero, self.loss_spliced, self.loss_clean)

    @property
    def loss_recovered_mean(self) -> float:
        return _recovered(self.loss_mean, self.loss_spliced, self.loss_clean)

    def _json_loss_zero_ablation(self) -> float:
        return self.loss_zero

    def _json_loss_mean_ablation(self) -> float:
        return self.loss_mean

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEEvaluation:
        """The inverse of ``to_dict`` (training.json keeps the evaluation this way)."""
        renamed = {"loss_zero_ablation": "loss_zero", "loss_mean_ablation": "loss_mean"}
        fields = {renamed.get(key, key): value for key, value in data.items()}
        return cls(**{name: fields[name] for name in cls.__dataclass_fields__})

    def figure(self) -> Figure:
        labels = ["fraction of variance explained", "loss recovered (vs mean ablation)", "loss recovered (vs zero)"]
        values = [self.fve, self.loss_recovered_mean, self.loss_recovered_zero]
        losses = ["clean model", "SAE spliced in", "mean-ablated", "zero-ablated"]
        return Figure(
            title=f"SAE quality at {self.hook} ({self.architecture}, {self.d_sae} features)",
            panels=[
                Bars("How much the SAE keeps (1 = everything)", labels, values, "fraction"),
                Bars(
                    "Next-token loss on held-out text",
                    losses,
                    [self.loss_clean, self.loss_spliced, self.loss_mean, self.loss_zero],
                    "nats per token",
                ),
            ],
            **explanation(self.kind, tokens=self.tokens, loss_tokens=self.loss_tokens, corpus=self.corpus),
            extra={
                "L0": f"{self.l0:.1f}",
                "dead": f"{self.dead_fraction:.1%}",
                "dense": f"{self.dense_fraction:.1%}",
            },
        )


def _recovered(ablated: float, spliced: float, clean: float) -> float:
    gap = ablated - clean
    return (ablated - spliced) / gap if abs(gap) > 1e-12 else math.nan


def evaluate_sae(
    model: Model,
    sae: SAE,
    *,
    corpus: str = "builtin",
    tokens: int = 32768,
    loss_tokens: int = 2048,
    seq_len: int | None = None,
    batch_size: int = 8,
    documents: Iterable[str] | None = None,
) -> SAEEvaluation:
    """Evaluate ``sae`` on ``tokens`` held-out tokens (activation metrics) and ``loss_tokens`` (losses),
    in sequences of ``seq_len`` (default: the SAE's training context, else 128, at most the model's)."""
    check_fits(sae, model)
    if seq_len is None:
        seq_len = min(sae.cfg.context_size or 128, model.context_length or 128)
    if tokens < 1 or loss_tokens < 0:
        raise InputError(f"evaluate on at least one token (got tokens={tokens}, loss_tokens={loss_tokens})")
    docs = documents if documents is not None else load_corpus(corpus, split="test")
    rows_per_seq = rows_per_sequence(model, seq_len)
    stream = ActivationStream(
        model, sae.hook, docs, seq_len, batch_size, sae.cfg.hook_head_index, max_rows=max(tokens, rows_per_seq)
    )
    stats = _activation_stats(sae, stream.rows())
    if stats["n"] == 0:
        raise InputError("the evaluation text gave no tokens; use a corpus with a test split that has text")
    n_loss_seqs = math.ceil(loss_tokens / rows_per_seq) if loss_tokens else 0
    losses = {"clean": math.nan, "spliced": math.nan, "zero": math.nan, "mean": math.nan}
    counted = 0
    if n_loss_seqs:
        mean = stats["mean"]
        variants = {
            "clean": [],
            "spliced": [splice(sae)],
            "zero": [AfterBOS(sae.hook, sae, torch.zeros_like)],
            "mean": [AfterBOS(sae.hook, sae, lambda x: mean.to(x.dtype).expand_as(x))],
        }
        totals = dict.fromkeys(variants, 0.0)
        sequences = packed_sequences(model, docs, seq_len, limit=n_loss_seqs)
        for batch in batches(sequences, batch_size):
            for key, interventions in variants.items():
                total, count = next_token_loss(model, batch, interventions)
                totals[key] += total
            counted += count
        losses = {key: total / max(counted, 1) for key, total in totals.items()}
    return SAEEvaluation(
        model=model.name,
        hook=sae.hook,
        architecture=sae.cfg.architecture,
        d_sae=sae.d_sae,
        corpus=load_corpus(corpus).describe() + " test split" if documents is None else "given text",
        tokens=stats["n"],
        loss_tokens=counted,
        l0=stats["l0"],
        fve=stats["fve"],
        mse=stats["mse"],
        dead_fraction=stats["dead"],
        dense_fraction=stats["dense"],
        loss_clean=losses["clean"],
        loss_spliced=losses["spliced"],
        loss_zero=losses["zero"],
        loss_mean=losses["mean"],
    )


@torch.inference_mode()
def _activation_stats(sae: SAE, chunks: Iterable[torch.Tensor]) -> dict[str, Any]:
    """L0, FVE, MSE, dead/dense fractions and the mean activation, pooled over every row.

    The variance is accumulated around the first chunk's mean (then corrected), which keeps float64
    sums exact enough for activations with a large common offset.
    """
    n, active, sq_err = 0, 0, 0.0
    counts = torch.zeros(sae.d_sae, dtype=torch.long)
    shift, total, total_sq = None, None, None
    for x in chunks:
        if x.shape[0] == 0:
            continue
        feats = sae.encode(x)
        sq_err += float((x - sae.decode(feats, like=x)).double().pow(2).sum())
        fired = feats > 0
        counts += fired.sum(0)
        active += int(fired.sum())
        shift = x.double().mean(0) if shift is None else shift
        centred = x.double() - shift
        total = centred.sum(0) if total is None else total + centred.sum(0)
        total_sq = centred.pow(2).sum() if total_sq is None else total_sq + centred.pow(2).sum()
        n += x.shape[0]
    if n == 0:
        return {"n": 0}
    variance = float(total_sq - total.pow(2).sum() / n)
    density = counts.double() / n
    return {
        "n": n,
        "l0": active / n,
        "fve": 1 - sq_err / variance if variance > 0 else math.nan,
        "mse": sq_err / n,
        "dead": float((counts == 0).double().mean()),
        "dense": float((density > DENSE_THRESHOLD).double().mean()),
        "mean": (shift + total / n).float(),
    }


@torch.inference_mode()
def next_token_loss(model: Model, batch: torch.Tensor, interventions: list) -> tuple[float, int]:
    """Summed next-token loss of the predictions made from position 1 on, and how many there are.

    Decoded from the cached ``ln_final`` in chunks, so [batch, pos, vocab] logits never exist at once.
    """
    run = model.run(batch, cache=["ln_final"], logits=False, interventions=interventions)
    normed = run.cache["ln_final"][:, 1:-1].reshape(-1, model.d_model)
    targets = batch[:, 2:].reshape(-1).to(normed.device)
    unembed = model.module(model.arch.unembed)
    cap = getattr(model.config, "final_logit_softcapping", None)
    total = 0.0
    for i in range(0, normed.shape[0], _CHUNK):
        logits = unembed(normed[i : i + _CHUNK]).float()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        total += float(F.cross_entropy(logits, targets[i : i + _CHUNK], reduction="sum"))
    return total, int(targets.numel())
