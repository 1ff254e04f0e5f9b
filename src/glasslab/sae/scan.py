"""One streamed pass over a corpus that collects, for any number of SAE features at once, what their
dashboards and labels need; memory does not grow with the corpus. Per feature it keeps:

- the ``k`` sequences where it fires most (each sequence counts once, at its maximum; earlier sequences
  win ties), with a window of tokens and activations around the maximum, merged batch by batch;
- a histogram of its non-zero activations whose bins double in width when a larger value arrives
  (pairs of bins merge, so every count stays exact);
- how many tokens it fires on (density) and the sum of its activations;

and, once for all features, how often each token occurs in the scanned text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data import batches, load_corpus, packed_sequences
from ..errors import InputError
from ..model.model import Model
from ..progress import progress
from .encode import check_feature, stop_after
from .sae import SAE


@dataclass(frozen=True)
class FeatureScan:
    """Everything one pass over a corpus kept, for ``features`` (tensors indexed like ``features``)."""

    corpus: str
    features: list[int]
    sequences: int
    tokens: int  # token positions scanned per feature (BOS left out unless asked)
    top_values: torch.Tensor  # [F, k] the best sequences' maxima, -inf where fewer than k fired
    top_sequence: torch.Tensor  # [F, k] their index in the scan
    top_position: torch.Tensor  # [F, k] where the maximum is
    window_ids: torch.Tensor  # [F, k, 2w+1] token ids around it (-1 outside the sequence)
    window_acts: torch.Tensor  # [F, k, 2w+1] the feature's activation there
    fired: torch.Tensor  # [F] tokens with a non-zero activation
    total: torch.Tensor  # [F] sum of activations
    maximum: torch.Tensor  # [F] largest activation (0 if it never fired)
    counts: torch.Tensor  # [F, bins] histogram of non-zero activations
    bin_width: torch.Tensor  # [F] float64; 0 where the feature never fired
    token_counts: torch.Tensor  # [vocab] how often each token occurs in the scanned sequences


def scan_features(
    model: Model,
    sae: SAE,
    features: Sequence[int] | None = None,
    *,
    corpus: str = "builtin",
    split: str | None = None,
    sequences: int = 64,
    seq_len: int = 64,
    batch_size: int = 16,
    k: int = 10,
    window: int = 8,
    bins: int = 40,
    include_bos: bool = False,
) -> FeatureScan:
    """Stream ``sequences`` packed sequences of ``corpus`` and collect each feature's statistics
    (``features=None``: all of them)."""
    chosen = list(range(sae.d_sae)) if features is None else [int(f) for f in features]
    if not chosen:
        raise InputError("no features given; name at least one feature index")
    for feature in chosen:
        check_feature(sae, feature)
    for name, value, low in (("sequences", sequences, 1), ("k", k, 1), ("window", window, 0), ("bins", bins, 2)):
        if value < low:
            raise InputError(f"{name} must be at least {low}, got {value}")
    if bins % 2:
        raise InputError(f"bins must be even (bins merge in pairs), got {bins}")
    source = load_corpus(corpus, split=split)  # type: ignore[arg-type]
    skip = 0 if include_bos or model.tokenizer.bos_token_id is None else 1
    if seq_len <= skip:
        raise InputError(f"seq_len must be at least {skip + 1}")
    n, span = len(chosen), 2 * window + 1
    index = torch.tensor(chosen)
    top_values = torch.full((n, k), -math.inf)
    top_sequence = torch.zeros((n, k), dtype=torch.long)
    top_position = torch.zeros((n, k), dtype=torch.long)
    window_ids = torch.full((n, k, span), -1, dtype=torch.long)
    window_acts = torch.zeros((n, k, span))
    fired = torch.zeros(n, dtype=torch.long)
    total = torch.zeros(n, dtype=torch.float64)
    maximum = torch.zeros(n)
    histogram = _Histogram(n, bins)
    token_counts = torch.zeros(model.vocab_size, dtype=torch.long)
    scanned = tokens = 0
    stream = batches(packed_sequences(model, source, seq_len, limit=sequences), batch_size)
    options = stop_after(model, sae.hook)
    offsets = torch.arange(-window, window + 1)
    for batch in progress(stream, total=math.ceil(sequences / batch_size), description=f"scanning {sae.hook}"):
        with torch.inference_mode():
            act = model.run(batch, cache=[sae.hook], **options).cache[sae.hook]
            acts = sae.encode(sae.read(act).to(sae.W_enc.device).float())[..., index.to(sae.W_enc.device)]
        acts = acts.float().cpu()  # [b, L, F]
        token_counts += torch.bincount(batch.reshape(-1), minlength=len(token_counts))[: len(token_counts)]
        scored = acts[:, skip:]
        fired += (scored > 0).sum((0, 1))
        total += scored.double().sum((0, 1))
        maximum = torch.maximum(maximum, scored.amax((0, 1)).clamp_min(0))
        tokens += scored.shape[0] * scored.shape[1]
        histogram.add(scored.reshape(-1, n))

        best, where = scored.max(dim=1)  # [b, F]: each sequence's maximum (first occurrence on ties)
        where = where + skip
        b, length = batch.shape
        around = where[..., None] + offsets  # [b, F, span]
        inside = (around >= 0) & (around < length)
        clipped = around.clamp(0, length - 1)
        cand_acts = acts.permute(0, 2, 1).gather(2, clipped) * inside
        cand_ids = batch[:, None, :].expand(b, n, length).gather(2, clipped).masked_fill(~inside, -1)
        values = torch.cat([top_values, best.T.masked_fill(best.T <= 0, -math.inf)], dim=1)
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]  # stable: earlier first
        top_values = values.gather(1, order)
        top_sequence = torch.cat([top_sequence, (scanned + torch.arange(b)).expand(n, b)], 1).gather(1, order)
        top_position = torch.cat([top_position, where.T], 1).gather(1, order)
        pick = order[..., None].expand(n, k, span)
        window_ids = torch.cat([window_ids, cand_ids.permute(1, 0, 2)], 1).gather(1, pick)
        window_acts = torch.cat([window_acts, cand_acts.permute(1, 0, 2)], 1).gather(1, pick)
        scanned += b
    if scanned == 0:
        raise InputError(f"corpus '{source.describe()}' has too little text for one sequence of {seq_len} tokens")
    return FeatureScan(
        corpus=source.describe(),
        features=chosen,
        sequences=scanned,
        tokens=tokens,
        top_values=top_values,
        top_sequence=top_sequence,
        top_position=top_position,
        window_ids=window_ids,
        window_acts=window_acts,
        fired=fired,
        total=total,
        maximum=maximum,
        counts=histogram.counts,
        bin_width=histogram.width,
        token_counts=token_counts,
    )


class _Histogram:
    """Per-feature histograms of positive values over ``[0, bins * width)``; when a value reaches the top,
    neighbouring bins merge in pairs and the width doubles, so counts stay exact in bounded memory."""

    def __init__(self, features: int, bins: int) -> None:
        self.bins = bins
        self.counts = torch.zeros((features, bins), dtype=torch.long)
        self.width = torch.zeros(features, dtype=torch.float64)

    def add(self, values: torch.Tensor) -> None:
        """``values`` [N, F]; only positive entries count."""
        values = values.double()
        top = values.amax(0)
        new = (self.width == 0) & (top > 0)
        # First values: the smallest power-of-two width that puts the maximum inside the range.
        self.width[new] = torch.exp2(torch.floor(torch.log2(top[new] / self.bins)) + 1)
        while True:
            grow = (self.width > 0) & (top >= self.width * self.bins)
            if not grow.any():
                break
            merged = self.counts[grow].view(-1, self.bins // 2, 2).sum(-1)
            self.counts[grow] = torch.cat([merged, torch.zeros_like(merged)], dim=1)
            self.width[grow] *= 2
        positive = values > 0
        safe = torch.where(self.width > 0, self.width, torch.ones_like(self.width))
        bucket = torch.floor(values / safe).long().clamp(0, self.bins - 1)
        self.counts.scatter_add_(1, bucket.T, positive.T.long())
