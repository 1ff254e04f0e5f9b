"""How far each layer's lens is from the model's output: mean KL(output || lens) per layer on held-out text,
for the logit lens and, given one, the tuned lens (``methods.lenses.tuned_lens``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...data import batches, load_corpus, packed_sequences
from ...errors import InputError
from ...model.model import Model
from ...progress import progress
from ...views.explanations import explanation, note
from ...views.figures import Figure, Heatmap
from ...views.result import Result
from ..metrics import kl_divergence
from .logit_lens import CHUNK, EMBED_LAYER, layer_label, lens_hook
from .tuned_lens_artifact import TunedLens, _hooks


@dataclass(frozen=True)
class LensKL(Result):
    """Per-layer KL(model output || lens), in nats, averaged over held-out tokens, for both lenses."""

    kind = "lens_kl"
    json_keys = ("model", "corpus", "tokens", "unit", "tuned_lens_objective", "layers")
    unit = "nats, KL(model output || lens), mean over tokens"

    model: str
    corpus: str
    tokens: int
    layers: list[int]  # -1 = embeddings
    logit_lens: list[float]
    tuned_lens: list[float] | None  # None when no tuned lens was given
    tuned_note: str

    def figure(self) -> Figure:
        rows = [self.logit_lens] + ([self.tuned_lens] if self.tuned_lens is not None else [])
        labels = ["logit lens"] + (["tuned lens"] if self.tuned_lens is not None else [])
        return Figure(
            f"{self.model}: how far each layer's lens is from the output",
            [
                Heatmap(
                    "KL(output || lens) per layer, nats",
                    rows,
                    labels,
                    [layer_label(layer) for layer in self.layers],
                    row_title="lens",
                    col_title="layer",
                    value_label="nats",
                    cell_text=[[f"{v:.2f}" for v in row] for row in rows],
                )
            ],
            **explanation(
                "lens_kl",
                tokens=self.tokens,
                corpus=self.corpus,
                tuned=note("lens_kl", "tuned", note=self.tuned_note) if self.tuned_note else "",
            ),
        )

    def _json_tuned_lens_objective(self) -> str | None:
        return self.tuned_note or None

    def _json_layers(self) -> list[dict]:
        return [
            {
                "layer": layer,
                "hook": lens_hook(layer),
                "logit_lens_kl": self.logit_lens[i],
                "tuned_lens_kl": self.tuned_lens[i] if self.tuned_lens is not None else None,
            }
            for i, layer in enumerate(self.layers)
        ]


def lens_kl(
    model: Model,
    corpus: str = "builtin",
    *,
    split: str | None = "test",
    tokens: int = 4096,
    seq_len: int = 128,
    batch_size: int = 4,
    lens: TunedLens | None = None,
) -> LensKL:
    """Mean KL(output || lens) per layer on about ``tokens`` tokens of ``corpus`` (default: the held-out split).

    Positions 0 (BOS) are left out. The last layer is computed for the logit lens (it checks that the lens
    reproduces the output: ~0); the tuned lens is the identity there, so it gets the same value.
    """
    if tokens < 1 or seq_len < 2 or batch_size < 1:
        raise InputError("tokens, batch_size must be at least 1 and seq_len at least 2")
    if lens is not None:
        lens.check_fits(model)
    source = load_corpus(corpus, split=split)
    hooks = _hooks(model)
    n_sequences = math.ceil(tokens / (seq_len - 1))
    logit_sum = torch.zeros(len(hooks), dtype=torch.float64)
    tuned_sum = torch.zeros(len(hooks), dtype=torch.float64)
    count = 0
    layers = list(range(EMBED_LAYER, model.n_layers))
    for batch in progress(
        batches(packed_sequences(model, source, seq_len, n_sequences), batch_size),
        total=math.ceil(n_sequences / batch_size),
        description="lens KL",
        unit="batch",
    ):
        run = model.run(batch, cache=hooks, logits=False)
        with torch.inference_mode():
            flat = {name: run.cache[name][:, 1:].reshape(-1, model.d_model) for name in hooks}
            for start in range(0, flat[hooks[0]].shape[0], CHUNK):
                rows = slice(start, start + CHUNK)
                reference = torch.log_softmax(model.unembed(flat[hooks[-1]][rows]).float(), dim=-1)
                for i, layer in enumerate(layers):
                    resid = flat[hooks[i]][rows]
                    logit_sum[i] += _kl_sum(model, reference, resid)
                    if lens is not None and layer != model.n_layers - 1:
                        tuned_sum[i] += _kl_sum(model, reference, lens.translate(layer, resid))
                count += flat[hooks[0]][rows].shape[0]
    if count == 0:
        raise InputError(f"corpus {source.describe()} gave no sequence of {seq_len} tokens; use a larger corpus")
    logit = (logit_sum / count).tolist()
    tuned = None
    if lens is not None:
        tuned = (tuned_sum / count).tolist()
        tuned[-1] = logit[-1]  # identity translator at the last layer
    return LensKL(model.name, source.describe(), count, layers, logit, tuned, lens.objective if lens else "")


def _kl_sum(model: Model, reference: torch.Tensor, resid: torch.Tensor) -> float:
    log_probs = torch.log_softmax(model.unembed(resid).float(), dim=-1)
    return float(kl_divergence(reference, log_probs).sum())
