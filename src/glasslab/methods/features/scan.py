"""One streamed pass over a corpus that collects, for any number of features at once (an SAE's, or any
``FeatureBasis``: neurons are the identity basis), what their dashboards, profiles and labels need;
memory does not grow with the corpus. Per feature it keeps:

- the ``k`` sequences where it fires most (each sequence counts once, at its maximum; earlier sequences
  win ties; for non-negative bases only sequences where it fired), with a window of tokens and
  activations around the maximum;
- a histogram of its non-zero activations whose bins double in width when a larger value arrives
  (pairs of bins merge, so every count stays exact);
- how many tokens it fires on (density) and the sum of its activations;

and, once for all features, how often each token occurs in the scanned text.

The sequences are cut into units scanned by the same job here or on Ray workers (``--cluster``), whose
partial results merge into exactly what one pass in order keeps (``scan_parts``); the job carries its basis
on the CPU and each worker moves it to its model's device (a GPU with ``worker_gpus``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ...cluster import ClusterSpec, cluster_spec, run_units
from ...data import load_corpus
from ...errors import InputError
from ...model.model import Model
from .basis import Context, FeatureBasis, FeatureDictionary, basis_of
from .scan_parts import ScanJob, ScanMerger, ScanState, plan_units, portable

_BATCHES_PER_UNIT = 8  # a unit is this many batches of sequences: the work one worker is handed at a time


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
    cluster: str | ClusterSpec | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
    on_unit: Callable[[int], None] | None = None,
) -> FeatureScan:
    """Stream ``sequences`` packed sequences of ``corpus`` and collect each feature's statistics
    (``features=None``: all of them) of ``sae``'s features or any basis's. ``cluster`` (``local``, ``auto``
    or an address) splits the sequences over Ray workers (``workers``, with ``worker_gpus`` GPUs each, the
    model and basis on cuda there); the result is the same. ``on_unit(sequences)`` follows each unit scanned,
    here or on a worker (a job's progress, where the model's own forward passes are not seen)."""
    basis = basis_of(sae)
    chosen = list(range(basis.size)) if features is None else [int(f) for f in features]
    if not chosen:
        raise InputError("no features given; name at least one feature index")
    for feature in chosen:
        basis.check(feature)
    checks = (("sequences", sequences, 1), ("batch_size", batch_size, 1), ("k", k, 1), ("window", window, 0))
    for name, value, low in (*checks, ("bins", bins, 2)):
        if value < low:
            raise InputError(f"{name} must be at least {low}, got {value}")
    if bins % 2:
        raise InputError(f"bins must be even (bins merge in pairs), got {bins}")
    source = load_corpus(corpus, split=split)  # type: ignore[arg-type]
    skip = 0 if include_bos or model.tokenizer.bos_token_id is None else 1
    if seq_len <= skip:
        raise InputError(f"seq_len must be at least {skip + 1}")
    spec = cluster_spec(cluster, workers, worker_gpus)
    shipped = spec.distributed
    job = ScanJob(portable(basis) if shipped else basis, tuple(chosen), k, window, bins, skip, batch_size, shipped)
    merger = ScanMerger(ScanState(len(chosen), k, window, bins, model.vocab_size, signed=basis.signed))
    for unit, part in run_units(
        job,
        plan_units(model, source, seq_len, sequences, batch_size * _BATCHES_PER_UNIT),
        model=model,
        spec=spec,
        description=description or f"scanning {basis.hook}",
        total=sequences,
        weight=lambda unit: unit.tokens.shape[0],
        unit_name="sequence",
    ):
        merger.add(unit.index, part)
        if on_unit is not None:
            on_unit(unit.tokens.shape[0])
    scanned = merger.state
    if scanned.sequences == 0:
        raise InputError(f"corpus '{source.describe()}' has too little text for one sequence of {seq_len} tokens")
    return FeatureScan(
        corpus=source.describe(),
        features=chosen,
        sequences=scanned.sequences,
        tokens=scanned.tokens,
        top_values=scanned.top.values,
        top_sequence=scanned.top.sequence,
        top_position=scanned.top.position,
        window_ids=scanned.top.window_ids,
        window_acts=scanned.top.window_acts,
        fired=scanned.fired,
        total=scanned.total,
        maximum=scanned.maximum,
        counts=scanned.histogram.counts,
        bin_width=scanned.histogram.width,
        token_counts=scanned.token_counts,
    )


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
