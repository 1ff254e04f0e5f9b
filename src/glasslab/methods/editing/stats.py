"""Second-moment statistics of MLP keys, ``C = E[k k^T]``: what ROME and MEMIT protect while editing.

A key ``k`` is the input of a layer's MLP output projection (the ``blocks.L.mlp.post`` hook, one vector per
token). ROME and MEMIT change the projection so that new keys map to new values while keys the model
meets in ordinary text (whose spread ``C`` measures) change as little as possible.

``C`` is estimated over a corpus from ``glasslab.data`` (streamed, packed into BOS-led sequences), BOS
positions left out: an edit key is never a BOS, and BOS activations are outliers in many models. Several
layers are measured in one pass, summed in units of sequences here or on Ray workers (``--cluster``; see
``methods.corpus_sums``) with the same result. Each layer's result is cached in the store
(``glasslab.store.KEY_STATS``) under
``editing/<model key>/key-stats/<corpus, split, tokens, sequence length>/layer-<L>`` as
``moment.safetensors`` (float64 ``C``) and ``stats.json``, written atomically with the store's manifest, so a
later edit reuses it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ...cluster import ClusterSpec, cluster_spec
from ...data import load_corpus
from ...data.corpus import Split, canonical_corpus
from ...errors import InputError
from ...model.model import Model
from ...store import KEY_STATS, location, save, verify
from ...views.result import Result
from ..corpus_sums import PartialSums, SequenceUnit, SumJob, plan_units, sum_units

FORMAT = 1
_MOMENT, _META = "moment.safetensors", "stats.json"


@dataclass(frozen=True, eq=False)
class KeyStats(Result):
    """``C = E[k k^T]`` of one layer's MLP keys over ``tokens`` corpus tokens (float64 ``[d_mlp, d_mlp]``)."""

    kind = "key_statistics"
    json_keys = (
        "model", "key", "layer", "hook", "corpus", "split", "tokens", "seq_len", "d_mlp", "trace", "seconds",
        "from_cache", "path",
    )  # fmt: skip

    model: str
    key: str
    layer: int
    corpus: str
    split: str | None
    tokens: int
    seq_len: int
    moment: torch.Tensor
    seconds: float  # time spent measuring (0 when read from the cache)
    from_cache: bool
    path: Path | None

    def _json_hook(self) -> str:
        return f"blocks.{self.layer}.mlp.post"

    def _json_d_mlp(self) -> int:
        return int(self.moment.shape[0])

    def _json_trace(self) -> float:
        return float(self.moment.trace())


def stats_folder(model: Model, layer: int, corpus: str, split: Split, tokens: int, seq_len: int) -> Path:
    """Where a layer's statistics live in the store (the corpus is named by a slug and a hash of its source)."""
    corpus = canonical_corpus(corpus)  # "builtin" is cached under the default's own name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(corpus).name)
    slug = re.sub(r"^[._-]+|-+$", "", slug)[:40]  # a store name starts with a letter or digit
    digest = hashlib.sha256(corpus.encode()).hexdigest()[:8]
    sample = f"{slug or 'corpus'}-{digest}-{split or 'all'}-{tokens}tok-{seq_len}"
    return location(KEY_STATS, model.key, f"{sample}/layer-{layer}")


def key_statistics(
    model: Model,
    layers: int | Sequence[int],
    *,
    corpus: str = "builtin",
    split: Split = "train",
    tokens: int = 50_000,
    seq_len: int | None = None,
    batch_size: int = 8,
    cache: bool = True,
    cluster: str | ClusterSpec | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
) -> dict[int, KeyStats]:
    """``C`` for each layer, from the store when cached, else measured in one streamed pass and stored.

    ``tokens``: how many corpus tokens (BOS excluded) to average over; ``seq_len`` tokens per sequence
    (default 128, or the context window if shorter). ``cache=False`` measures afresh and stores nothing.
    ``cluster`` (``local``, ``auto`` or an address) measures on Ray workers (``workers``, each with
    ``worker_gpus`` GPUs): the same statistics, cached the same way.
    """
    if seq_len is None:
        seq_len = min(128, model.context_length or 128)
    layer_list = sorted({int(layer) for layer in ([layers] if isinstance(layers, int) else layers)})
    if not layer_list or any(not 0 <= layer < model.n_layers for layer in layer_list):
        raise InputError(f"layers must be in 0..{model.n_layers - 1}, got {list(layers) if layers else 'none'}")
    if tokens < 1 or batch_size < 1:
        raise InputError("tokens and batch_size must be positive")
    found: dict[int, KeyStats] = {}
    if cache:
        for layer in layer_list:
            stats = _read(model, stats_folder(model, layer, corpus, split, tokens, seq_len))
            if stats is not None:
                found[layer] = stats
    spec = cluster_spec(cluster, workers, worker_gpus)
    missing = [layer for layer in layer_list if layer not in found]
    if missing:
        measured = _measure(model, missing, corpus, split, tokens, seq_len, batch_size, spec)
        for layer, stats in measured.items():
            found[layer] = _write(stats) if cache else stats
    return {layer: found[layer] for layer in layer_list}


@dataclass(frozen=True)
class KeyMomentJob(SumJob):
    """``sum k k^T`` of a unit's MLP keys at each of ``hooks``, BOS positions (``first``) left out."""

    hooks: tuple[str, ...]
    first: int
    batch_size: int

    def run(self, model: Model | None, unit: SequenceUnit) -> PartialSums:
        assert model is not None
        stop = max(model.hook_spec(hook).layer for hook in self.hooks) + 1
        sums = {hook: torch.zeros(model.d_mlp, model.d_mlp, dtype=torch.float64) for hook in self.hooks}
        for batch in unit.tokens.split(self.batch_size):
            run = model.run(batch, cache=list(self.hooks), stop_at_layer=stop)
            for hook in self.hooks:
                keys = run.cache[hook][:, self.first :].reshape(-1, model.d_mlp).double().cpu()
                if not torch.isfinite(keys).all():
                    layer = model.hook_spec(hook).layer
                    raise InputError(f"the MLP keys at layer {layer} hold NaN or infinity; load the model in float32")
                sums[hook] += keys.T @ keys
        return PartialSums(sums, unit.tokens.shape[0] * (unit.tokens.shape[1] - self.first))


def _measure(
    model: Model,
    layers: list[int],
    corpus: str,
    split: Split,
    tokens: int,
    seq_len: int,
    batch_size: int,
    spec: ClusterSpec,
) -> dict[int, KeyStats]:
    started = time.perf_counter()
    first = 1 if model.tokenizer.bos_token_id is not None else 0
    n_sequences = -(-tokens // (seq_len - first))
    hooks = {layer: f"blocks.{layer}.mlp.post" for layer in layers}
    units = plan_units(model, load_corpus(corpus, split=split), seq_len, n_sequences, batch_size)
    job = KeyMomentJob(tuple(hooks.values()), first, batch_size)
    total = sum_units(job, units, model=model, spec=spec, description="key statistics", sequences=n_sequences)
    seen = total.count
    if seen < tokens:
        raise InputError(
            f"the corpus '{corpus}' gave only {seen} tokens but {tokens} were asked for; ask for fewer or use a "
            "bigger corpus"
        )
    seconds = time.perf_counter() - started
    return {
        layer: KeyStats(
            model=model.name,
            key=model.key,
            layer=layer,
            corpus=corpus,
            split=split,
            tokens=seen,
            seq_len=seq_len,
            moment=total.sums[hooks[layer]] / seen,
            seconds=seconds,
            from_cache=False,
            path=stats_folder(model, layer, corpus, split, tokens, seq_len),
        )
        for layer in layers
    }


def _write(stats: KeyStats) -> KeyStats:
    assert stats.path is not None
    summary = {"layer": stats.layer, "corpus": stats.corpus, "tokens": stats.tokens, "seq_len": stats.seq_len}
    name = stats.path.relative_to(location(KEY_STATS, stats.key)).as_posix()  # "<sample>/layer-<L>"
    with save(KEY_STATS, stats.key, name, summary=summary) as tmp:
        save_file({"moment": stats.moment.contiguous()}, str(tmp / _MOMENT))
        meta = {k: v for k, v in stats.to_dict().items() if k not in ("path", "from_cache")} | {"format": FORMAT}
        (tmp / _META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return stats


def _read(model: Model, folder: Path) -> KeyStats | None:
    """The cached statistics, or None when absent; an unreadable cache is measured again."""
    if not (folder / _META).exists() or not (folder / _MOMENT).exists():
        return None
    try:
        verify(folder, KEY_STATS)  # cut or replaced files: measured again
        meta = json.loads((folder / _META).read_text(encoding="utf-8"))
        moment = load_file(str(folder / _MOMENT))["moment"]
        if meta.get("format") != FORMAT or meta.get("key") != model.key:
            return None
        if moment.shape != (model.d_mlp, model.d_mlp) or moment.dtype != torch.float64:
            return None
        if not torch.isfinite(moment).all():
            return None
        return KeyStats(
            model=model.name,
            key=model.key,
            layer=int(meta["layer"]),
            corpus=str(meta["corpus"]),
            split=meta.get("split"),
            tokens=int(meta["tokens"]),
            seq_len=int(meta["seq_len"]),
            moment=moment,
            seconds=0.0,
            from_cache=True,
            path=folder,
        )
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        return None
