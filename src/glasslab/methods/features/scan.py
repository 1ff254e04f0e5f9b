"""One streamed pass over a corpus that collects, for any number of features at once (an SAE's, or any
``FeatureBasis``: neurons are the identity basis), what their dashboards, profiles and labels need;
memory does not grow with the corpus. Per feature it keeps:

- the ``k`` sequences where it fires most (each sequence counts once, at its maximum; earlier sequences
  win ties; for non-negative bases only sequences where it fired), with a window of tokens and
  activations around the maximum, merged batch by batch;
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

from ...data import batches, load_corpus, packed_sequences
from ...errors import InputError
from ...model.model import Model
from ...progress import progress
from .basis import Context, FeatureBasis, FeatureDictionary, basis_of
from .encode import stop_after


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
    maximum: torch.Tensor  # [F] largest activation (non-negative bases: 0 if it never fired)
    counts: torch.Tensor  # [F, bins] histogram of non-zero activations
    bin_width: torch.Tensor  # [F] float64; 0 where the feature never fired
    token_counts: torch.Tensor  # [vocab] how often each token occurs in the scanned sequences


def scan_features(
    model: Model,
    sae: FeatureDictionary | FeatureBasis,
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
    description: str | None = None,
) -> FeatureScan:
    """Stream ``sequences`` packed sequences of ``corpus`` and collect each feature's statistics
    (``features=None``: all of them) of ``sae``'s features or any basis's."""
    basis = basis_of(sae)
    chosen = list(range(basis.size)) if features is None else [int(f) for f in features]
    if not chosen:
        raise InputError("no features given; name at least one feature index")
    for feature in chosen:
        basis.check(feature)
    for name, value, low in (("sequences", sequences, 1), ("k", k, 1), ("window", window, 0), ("bins", bins, 2)):
        if value < low:
            raise InputError(f"{name} must be at least {low}, got {value}")
    if bins % 2:
        raise InputError(f"bins must be even (bins merge in pairs), got {bins}")
    source = load_corpus(corpus, split=split)  # type: ignore[arg-type]
    skip = 0 if include_bos or model.tokenizer.bos_token_id is None else 1
    if seq_len <= skip:
        raise InputError(f"seq_len must be at least {skip + 1}")
    n = len(chosen)
    index = torch.tensor(chosen)
    top = _TopContexts(n, k, window, keep_negative=basis.signed)
    fired = torch.zeros(n, dtype=torch.long)
    total = torch.zeros(n, dtype=torch.float64)
    maximum = torch.full((n,), -math.inf) if basis.signed else torch.zeros(n)
    histogram = _Histogram(n, bins)
    token_counts = torch.zeros(model.vocab_size, dtype=torch.long)
    tokens = 0
    stream = batches(packed_sequences(model, source, seq_len, limit=sequences), batch_size)
    options = stop_after(model, basis.hook)
    described = description or f"scanning {basis.hook}"
    for batch in progress(stream, total=math.ceil(sequences / batch_size), description=described):
        with torch.inference_mode():
            encoded = basis.values(model.run(batch, cache=[basis.hook], **options).cache[basis.hook])
            acts = encoded[..., index.to(encoded.device)]
        acts = acts.float().cpu()  # [b, L, F]
        token_counts += torch.bincount(batch.reshape(-1), minlength=len(token_counts))[: len(token_counts)]
        scored = acts[:, skip:]
        fired += (scored > 0).sum((0, 1))
        total += scored.double().sum((0, 1))
        maximum = torch.maximum(maximum, scored.amax((0, 1)))
        tokens += scored.shape[0] * scored.shape[1]
        histogram.add(scored.reshape(-1, n))
        top.add(batch, acts, skip)
    if top.scanned == 0:
        raise InputError(f"corpus '{source.describe()}' has too little text for one sequence of {seq_len} tokens")
    return FeatureScan(
        corpus=source.describe(),
        features=chosen,
        sequences=top.scanned,
        tokens=tokens,
        top_values=top.values,
        top_sequence=top.sequence,
        top_position=top.position,
        window_ids=top.window_ids,
        window_acts=top.window_acts,
        fired=fired,
        total=total,
        maximum=maximum,
        counts=histogram.counts,
        bin_width=histogram.width,
        token_counts=token_counts,
    )


class _TopContexts:
    """Per feature, the ``k`` sequences with the largest maximum so far (earlier ones win ties), each with
    the token ids and activations ``window`` either side of it, merged batch by batch in bounded memory.
    Sequences where a feature never rose above 0 count only when ``keep_negative`` (neurons)."""

    def __init__(self, features: int, k: int, window: int, *, keep_negative: bool) -> None:
        span = 2 * window + 1
        self.k, self.keep_negative, self.scanned = k, keep_negative, 0
        self.offsets = torch.arange(-window, window + 1)
        self.values = torch.full((features, k), -math.inf)
        self.sequence = torch.zeros((features, k), dtype=torch.long)
        self.position = torch.zeros((features, k), dtype=torch.long)
        self.window_ids = torch.full((features, k, span), -1, dtype=torch.long)
        self.window_acts = torch.zeros((features, k, span))

    def add(self, batch: torch.Tensor, acts: torch.Tensor, skip: int) -> None:
        """``batch`` [b, L] token ids and ``acts`` [b, L, F]; the first ``skip`` positions never count."""
        n, k, span = self.values.shape[0], self.k, self.window_ids.shape[2]
        best, where = acts[:, skip:].max(dim=1)  # [b, F]: each sequence's maximum (first occurrence on ties)
        where = where + skip
        b, length = batch.shape
        around = where[..., None] + self.offsets  # [b, F, span]
        inside = (around >= 0) & (around < length)
        clipped = around.clamp(0, length - 1)
        cand_acts = acts.permute(0, 2, 1).gather(2, clipped) * inside
        cand_ids = batch[:, None, :].expand(b, n, length).gather(2, clipped).masked_fill(~inside, -1)
        candidates = best.T if self.keep_negative else best.T.masked_fill(best.T <= 0, -math.inf)
        values = torch.cat([self.values, candidates], dim=1)
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]  # stable: earlier first
        self.values = values.gather(1, order)
        self.sequence = torch.cat([self.sequence, (self.scanned + torch.arange(b)).expand(n, b)], 1).gather(1, order)
        self.position = torch.cat([self.position, where.T], 1).gather(1, order)
        pick = order[..., None].expand(n, k, span)
        self.window_ids = torch.cat([self.window_ids, cand_ids.permute(1, 0, 2)], 1).gather(1, pick)
        self.window_acts = torch.cat([self.window_acts, cand_acts.permute(1, 0, 2)], 1).gather(1, pick)
        self.scanned += b


def contexts_of(scan: FeatureScan, i: int, decode) -> list[Context]:
    """Row ``i``'s top contexts, best first (they stop at the first slot where fewer sequences counted)."""
    contexts = []
    span = scan.window_ids.shape[2] // 2
    for j in range(scan.top_values.shape[1]):
        value = float(scan.top_values[i, j])
        if value == -math.inf:
            break
        inside = scan.window_ids[i, j] >= 0
        first = int(inside.nonzero()[0])
        contexts.append(
            Context(
                activation=value,
                sequence=int(scan.top_sequence[i, j]),
                position=int(scan.top_position[i, j]),
                tokens=[decode([t]) for t in scan.window_ids[i, j][inside].tolist()],
                activations=scan.window_acts[i, j][inside].tolist(),
                centre=span - first,
            )
        )
    return contexts


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
