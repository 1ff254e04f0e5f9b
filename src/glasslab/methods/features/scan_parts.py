"""The pieces of a corpus scan (``scan.scan_features``): the driver cuts the packed sequence stream into
units of consecutive sequences, a ``ScanJob`` scans one unit into a ``ScanState`` (in this process or on a
Ray worker: the same code), and a ``ScanMerger`` merges the states as they arrive into exactly what one
sequential pass keeps, whatever order the units finish in:

- top contexts are ordered by value, then by sequence (each state holds global sequence indices), so the
  earlier sequence wins a tie wherever its unit ran;
- histogram widths are powers of two that depend only on the largest value, so merging pairs of the
  narrower histogram's bins until the widths match gives the counts one pass would have;
- counts add exactly; sums of activations (floats) are added in unit order.

A job sent to Ray workers carries its basis on the CPU and without its caches (``portable``), which every
worker can unpickle, and each worker moves it to the device its model runs on (a GPU with ``worker_gpus``).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...cluster import UnitJob
from ...data import SequenceUnit, sequence_units
from ...model.model import Model
from .basis import FeatureBasis
from .encode import stop_after

# What a dictionary keeps from files it read (search index, atlas, labels; large, possibly on its device): a
# copy shipped to workers goes without them, and a worker reads again whatever it needs.
CACHES = ("search_cache", "atlas_cache", "labels_cache")


def plan_units(
    model: Model, documents: Iterable[str], seq_len: int, sequences: int, unit_sequences: int
) -> Iterator[SequenceUnit]:
    """The scan's units in order: ``sequences`` packed sequences cut every ``unit_sequences``."""
    return sequence_units(model, documents, seq_len, unit_sequences, limit=sequences)


class TopContexts:
    """Per feature, the ``k`` sequences with the largest maximum (the earlier sequence wins a tie), each with
    the token ids and activations ``window`` either side of it, in bounded memory. Sequences where a feature
    never rose above 0 count only when ``keep_negative`` (neurons). Sequence indices start at ``first``."""

    def __init__(self, features: int, k: int, window: int, *, keep_negative: bool, first: int = 0) -> None:
        span = 2 * window + 1
        self.k, self.keep_negative, self.next_sequence = k, keep_negative, first
        self.offsets = torch.arange(-window, window + 1)
        self.values = torch.full((features, k), -math.inf)
        self.sequence = torch.zeros((features, k), dtype=torch.long)
        self.position = torch.zeros((features, k), dtype=torch.long)
        self.window_ids = torch.full((features, k, span), -1, dtype=torch.long)
        self.window_acts = torch.zeros((features, k, span))

    def add(self, batch: torch.Tensor, acts: torch.Tensor, skip: int) -> None:
        """``batch`` [b, L] token ids (the next sequences) and ``acts`` [b, L, F]; the first ``skip``
        positions never count."""
        n = self.values.shape[0]
        best, where = acts[:, skip:].max(dim=1)  # [b, F]: each sequence's maximum (first occurrence on ties)
        where = where + skip
        b, length = batch.shape
        around = where[..., None] + self.offsets  # [b, F, span]
        inside = (around >= 0) & (around < length)
        clipped = around.clamp(0, length - 1)
        cand_acts = acts.permute(0, 2, 1).gather(2, clipped) * inside
        cand_ids = batch[:, None, :].expand(b, n, length).gather(2, clipped).masked_fill(~inside, -1)
        candidates = best.T if self.keep_negative else best.T.masked_fill(best.T <= 0, -math.inf)
        sequence = (self.next_sequence + torch.arange(b)).expand(n, b)
        self._keep(candidates, sequence, where.T, cand_ids.permute(1, 0, 2), cand_acts.permute(1, 0, 2))
        self.next_sequence += b

    def merge(self, other: TopContexts) -> None:
        """Keep the best of both (``other`` scanned other sequences, before or after these)."""
        self._keep(other.values, other.sequence, other.position, other.window_ids, other.window_acts)

    def _keep(self, values: Tensor, sequence: Tensor, position: Tensor, ids: Tensor, acts: Tensor) -> None:
        """The best ``k`` of these and the kept ones by (value descending, sequence ascending). Slots no sequence
        filled (-inf, sequence 0) come first in the concatenation, so they stay ahead of sequences that did
        not count."""
        values = torch.cat([self.values, values], 1)
        sequence = torch.cat([self.sequence, sequence], 1)
        by_sequence = torch.sort(sequence, dim=1, stable=True).indices
        by_value = torch.sort(values.gather(1, by_sequence), dim=1, descending=True, stable=True).indices
        order = by_sequence.gather(1, by_value[:, : self.k])
        pick = order[..., None].expand(*order.shape, self.window_ids.shape[2])
        self.values = values.gather(1, order)
        self.sequence = sequence.gather(1, order)
        self.position = torch.cat([self.position, position], 1).gather(1, order)
        self.window_ids = torch.cat([self.window_ids, ids], 1).gather(1, pick)
        self.window_acts = torch.cat([self.window_acts, acts], 1).gather(1, pick)


class Histogram:
    """Per-feature histograms of positive values over ``[0, bins * width)``, ``width`` the smallest power of
    two that puts the largest value inside; when a larger value arrives, neighbouring bins merge in pairs
    and the width doubles, so counts stay exact in bounded memory (and two histograms merge exactly)."""

    def __init__(self, features: int, bins: int) -> None:
        self.bins = bins
        self.counts = torch.zeros((features, bins), dtype=torch.long)
        self.width = torch.zeros(features, dtype=torch.float64)

    def add(self, values: torch.Tensor) -> None:
        """``values`` [N, F]; only positive entries count."""
        values = values.double()
        self._widen(_fitting_width(values.amax(0), self.bins))
        positive = values > 0
        safe = torch.where(self.width > 0, self.width, torch.ones_like(self.width))
        bucket = torch.floor(values / safe).long().clamp(0, self.bins - 1)
        self.counts.scatter_add_(1, bucket.T, positive.T.long())

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts (``other`` is widened on a copy, left as it was)."""
        self._widen(other.width)
        widened = Histogram(len(other.width), self.bins)
        widened.counts, widened.width = other.counts.clone(), other.width.clone()
        widened._widen(self.width)
        self.counts += widened.counts

    def _widen(self, width: torch.Tensor) -> None:
        """Grow each feature's width to ``width`` where that is wider (both powers of two, or 0)."""
        unset = (self.width == 0) & (width > 0)  # nothing counted yet: no bins to merge
        self.width[unset] = width[unset]
        while True:
            grow = (self.width > 0) & (self.width < width)
            if not grow.any():
                return
            merged = self.counts[grow].view(-1, self.bins // 2, 2).sum(-1)
            self.counts[grow] = torch.cat([merged, torch.zeros_like(merged)], dim=1)
            self.width[grow] *= 2


def _fitting_width(top: torch.Tensor, bins: int) -> torch.Tensor:
    """Per feature, the smallest power of two ``w`` with ``top < w * bins`` (0 where ``top`` is not positive).
    The logarithm only estimates it (it may round across a power of two); exact comparisons settle it."""
    positive = top > 0
    safe = torch.where(positive, top, torch.ones_like(top))
    width = torch.exp2(torch.floor(torch.log2(safe / bins)) + 1)
    width = torch.where(safe >= width * bins, width * 2, width)
    width = torch.where(safe < width * bins / 2, width / 2, width)
    return torch.where(positive, width, torch.zeros_like(width))


class ScanState:
    """What a scan keeps for features (indexed like the scan's ``features``), over some of its sequences."""

    def __init__(self, features: int, k: int, window: int, bins: int, vocab: int, *, signed: bool, first: int = 0):
        self.top = TopContexts(features, k, window, keep_negative=signed, first=first)
        self.fired = torch.zeros(features, dtype=torch.long)  # tokens with a non-zero activation
        self.total = torch.zeros(features, dtype=torch.float64)  # sum of activations
        self.maximum = torch.full((features,), -math.inf) if signed else torch.zeros(features)
        self.histogram = Histogram(features, bins)
        self.token_counts = torch.zeros(vocab, dtype=torch.long)
        self.tokens = 0  # token positions scanned per feature
        self.sequences = 0

    def add(self, batch: torch.Tensor, acts: torch.Tensor, skip: int) -> None:
        """The next ``batch`` [b, L] of sequences with the features' activations ``acts`` [b, L, F]."""
        vocab = len(self.token_counts)
        self.token_counts += torch.bincount(batch.reshape(-1), minlength=vocab)[:vocab]
        scored = acts[:, skip:]
        self.fired += (scored > 0).sum((0, 1))
        self.total += scored.double().sum((0, 1))
        self.maximum = torch.maximum(self.maximum, scored.amax((0, 1)))
        self.tokens += scored.shape[0] * scored.shape[1]
        self.histogram.add(scored.reshape(-1, scored.shape[-1]))
        self.top.add(batch, acts, skip)
        self.sequences += batch.shape[0]

    def merge(self, other: ScanState) -> None:
        """Add what ``other`` kept of other sequences, all but ``total``: a float sum, whose rounding depends on
        the order of additions, so ``ScanMerger`` adds it in unit order."""
        self.top.merge(other.top)
        self.histogram.merge(other.histogram)
        self.maximum = torch.maximum(self.maximum, other.maximum)
        self.fired += other.fired
        self.token_counts += other.token_counts
        self.tokens += other.tokens
        self.sequences += other.sequences


class ScanMerger:
    """Merges units' states as they finish (in any order) into the state one sequential pass ends with."""

    def __init__(self, empty: ScanState) -> None:
        self.state = empty
        self.waiting: dict[int, torch.Tensor] = {}  # totals of units that finished before an earlier one
        self.next_unit = 0

    def add(self, unit: int, part: ScanState) -> None:
        self.state.merge(part)
        self.waiting[unit] = part.total
        while self.next_unit in self.waiting:
            self.state.total += self.waiting.pop(self.next_unit)
            self.next_unit += 1


@dataclass(frozen=True)
class ScanJob(UnitJob[SequenceUnit, ScanState]):
    """Scan one unit's sequences for ``features`` of ``basis`` (the same code in this process and on workers)."""

    basis: FeatureBasis
    features: tuple[int, ...]
    k: int
    window: int
    bins: int
    skip: int  # leading positions that never count (BOS)
    batch_size: int
    shipped: bool = False  # the basis travels on the CPU (``portable``) and goes to the model's device on arrival

    def run(self, model: Model | None, unit: SequenceUnit) -> ScanState:
        assert model is not None
        if self.shipped:  # this worker's own copy of the basis, unpickled for this unit: moving it is safe
            place(self.basis, model.device)
        hook = self.basis.hook
        state = ScanState(
            len(self.features),
            self.k,
            self.window,
            self.bins,
            model.vocab_size,
            signed=self.basis.signed,
            first=unit.first_sequence,
        )
        index = torch.tensor(self.features)
        options = stop_after(model, hook)
        for batch in unit.tokens.split(self.batch_size):
            with torch.inference_mode():
                encoded = self.basis.values(model.run(batch, cache=[hook], **options).cache[hook])
                acts = encoded[..., index.to(encoded.device)]
            state.add(batch, acts.float().cpu(), self.skip)
        return state


def portable(basis: FeatureBasis) -> FeatureBasis:
    """The basis as a job carries it to Ray workers: its modules (an SAE, a transcoder) on the CPU, which any
    worker can unpickle (a CUDA tensor cannot be unpickled on a CPU-only node), and without their ``CACHES``.
    A basis already on the CPU with nothing cached is itself; otherwise a copy, so the driver's modules stay
    where they are and keep their caches."""
    moved = {name: _cpu_copy(module) for name, module in _modules(basis).items() if _off_cpu(module) or _cached(module)}
    if not moved:
        return basis
    carried = copy.copy(basis)
    vars(carried).update(moved)
    return carried


def place(basis: FeatureBasis, device: torch.device | str) -> None:
    """Move the basis's modules to ``device``, in place (a worker's unpickled copy: nobody else holds it)."""
    for module in _modules(basis).values():
        module.to(device)


def _modules(basis: FeatureBasis) -> dict[str, nn.Module]:
    return {name: value for name, value in vars(basis).items() if isinstance(value, nn.Module)}


def _off_cpu(module: nn.Module) -> bool:
    return any(t.device.type != "cpu" for t in itertools.chain(module.parameters(), module.buffers()))


def _cached(module: nn.Module) -> bool:
    return any(vars(module).get(name) is not None for name in CACHES)


def _cpu_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` without its ``CACHES``, with every parameter and buffer on the CPU, made without a
    second copy on its device: deepcopy takes the CPU tensors from its memo wherever it meets the originals.
    A tensor already on the CPU is shared with the original, not copied."""
    stripped = copy.copy(module)  # its own attribute dict: dropping the caches leaves the original's
    for name in CACHES:
        if vars(stripped).get(name) is not None:
            setattr(stripped, name, None)
    memo: dict[int, object] = {}
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        on_cpu = tensor.detach().cpu()
        memo[id(tensor)] = nn.Parameter(on_cpu, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else on_cpu
    return copy.deepcopy(stripped, memo)
