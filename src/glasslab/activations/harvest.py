"""Harvest activations at any hooks (several at once, from one forward pass) into a sharded store.

The driver reads the corpus and packs it into sequences (tokenising is cheap), cuts them into shards of
``shard_sequences`` and hands each shard to a worker: this process, or Ray actors split over the corpus
by documents (``--cluster``). A worker runs the model on its shard's sequences, stopped after the last
hooked layer, and writes the shard; the driver records it in the manifest as it lands. Running the same
harvest again resumes it: the manifest says which shards are done, and only the others are run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from ..cluster import ClusterSpec, UnitJob, cluster_spec, run_units
from ..data import SequenceUnit, load_corpus, sequence_units
from ..errors import InputError
from ..model.model import Model
from ..views.result import Result
from .rows import hook_rows, hook_width, rows_per_sequence, skips_bos, stop_layer
from .shards import (
    DOCUMENTS,
    TOKENS,
    HarvestSettings,
    Manifest,
    ShardFolder,
    ShardRecord,
    encode_shard,
    shard_name,
)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class HarvestJob(UnitJob[SequenceUnit, ShardRecord]):
    """Run the model on a shard's sequences and write the shard (the same code locally and on workers)."""

    url: str
    hooks: tuple[str, ...]
    dtype: str
    model_batch: int

    def run(self, model: Model | None, unit: SequenceUnit) -> ShardRecord:
        assert model is not None
        stops = [stop_layer(model, hook) for hook in self.hooks]
        stop = None if None in stops else max(s for s in stops if s is not None)
        per_hook: dict[str, list[torch.Tensor]] = {hook: [] for hook in self.hooks}
        skip = 1 if skips_bos(model) else 0
        for batch in unit.tokens.split(self.model_batch):
            with torch.inference_mode():
                run = model.run(batch, cache=list(self.hooks), logits=False, stop_at_layer=stop)
            for hook in self.hooks:
                act = hook_rows(model, hook, run.cache[hook], None)[:, skip:]
                rows = act.reshape(-1, act.shape[-1]).to("cpu", DTYPES[self.dtype])
                if not torch.isfinite(rows).all():
                    raise InputError(f"the model produced NaN or infinite activations at '{hook}'; load it in float32")
                per_hook[hook].append(rows)
        tensors = {hook: torch.cat(chunks) for hook, chunks in per_hook.items()}
        tensors[TOKENS] = unit.tokens.to(torch.int32)
        documents = unit.documents if unit.documents is not None else torch.full_like(unit.tokens, -1)
        tensors[DOCUMENTS] = documents.to(torch.int32)
        data, digest = encode_shard(tensors)
        name = shard_name(unit.index)
        ShardFolder(self.url).write(name, data)
        owned = documents[documents >= 0]
        return ShardRecord(
            index=unit.index,
            file=name,
            rows=int(tensors[self.hooks[0]].shape[0]),
            sequences=int(unit.tokens.shape[0]),
            first_sequence=unit.first_sequence,
            documents=(int(owned.min()), int(owned.max())) if owned.numel() else (-1, -1),
            sha256=digest,
            bytes=len(data),
        )


@dataclass(frozen=True)
class Harvest(Result):
    """A finished (or resumed and finished) harvest: where it is and what this call did."""

    kind = "harvest"
    json_keys = ("url", "model", "hooks", "widths", "dtype", "rows", "shards", "shards_run", "shards_kept", "bytes")

    url: str
    manifest: Manifest
    shards_run: int
    shards_kept: int

    def _json_model(self) -> str:
        return self.manifest.settings.model

    def _json_hooks(self) -> list[str]:
        return list(self.manifest.settings.hooks)

    def _json_widths(self) -> dict[str, int]:
        return self.manifest.widths

    def _json_dtype(self) -> str:
        return self.manifest.settings.dtype

    def _json_rows(self) -> int:
        return self.manifest.rows

    def _json_shards(self) -> int:
        return len(self.manifest.shards)

    def _json_bytes(self) -> int:
        return sum(shard.bytes for shard in self.manifest.shards.values())


def harvest(
    model: Model,
    hooks: str | Sequence[str],
    out: str,
    *,
    corpus: str = "builtin",
    split: str | None = "train",
    tokens: int = 1_000_000,
    seq_len: int = 128,
    shard_tokens: int = 65_536,
    model_batch: int = 16,
    dtype: str = "float32",
    cluster: str | ClusterSpec | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
    fresh: bool = False,
    documents: Iterable[str] | None = None,
    on_shard: Callable[[ShardRecord], None] | None = None,
) -> Harvest:
    """Harvest ``tokens`` activation rows at ``hooks`` into ``out`` (a folder or fsspec URL), resuming a
    harvest with the same settings there unless ``fresh``. ``cluster`` (with ``workers``, each with
    ``worker_gpus`` GPUs) runs it on Ray; ``documents`` replaces the corpus's text."""
    names = tuple(model.expand_hooks(hooks))
    if not names:
        raise InputError("no hooks given; name at least one hook (see 'glasslab hooks')")
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    for name, value in (("tokens", tokens), ("shard_tokens", shard_tokens), ("model_batch", model_batch)):
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    per_sequence = rows_per_sequence(model, seq_len)
    if per_sequence < 1:
        raise InputError(f"seq_len {seq_len} leaves no token after BOS; use at least 2")
    settings = HarvestSettings(
        model=model.key,
        hooks=names,
        dtype=dtype,
        corpus=corpus if documents is None else "(documents given)",
        split=split,
        seq_len=seq_len,
        shard_sequences=math.ceil(shard_tokens / per_sequence),
        sequences=math.ceil(tokens / per_sequence),
    )
    widths = {hook: hook_width(model, hook) for hook in names}  # a hook with no rows fails before --fresh deletes
    folder = ShardFolder(out)
    manifest = _start(folder, settings, fresh)
    manifest.widths = widths
    done = set(manifest.shards)
    text = documents if documents is not None else load_corpus(corpus, split=split)  # type: ignore[arg-type]
    todo = (unit for unit in plan_shards(model, text, settings) if unit.index not in done)
    job = HarvestJob(folder.url, names, dtype, model_batch)
    spec = cluster_spec(cluster, workers, worker_gpus)
    run = 0
    for _, record in run_units(
        job,
        todo,
        model=model,
        spec=spec,
        description=f"harvesting {', '.join(names)}",
        total=math.ceil(settings.sequences / settings.shard_sequences),
        unit_name="shard",
    ):
        manifest.shards[record.index] = record
        folder.save_manifest(manifest)
        run += 1
        if on_shard is not None:
            on_shard(record)
    if not manifest.shards:
        raise InputError(f"corpus '{settings.corpus}' has too little text for one sequence of {seq_len} tokens")
    manifest.complete = True
    folder.save_manifest(manifest)
    folder.remove_partials()
    return Harvest(folder.url, manifest, run, len(done))


def plan_shards(model: Model, documents: Iterable[str], settings: HarvestSettings) -> Iterator[SequenceUnit]:
    """The harvest's shards in order: the corpus packed into sequences, cut every ``shard_sequences``."""
    return sequence_units(model, documents, settings.seq_len, settings.shard_sequences, limit=settings.sequences)


def _start(folder: ShardFolder, settings: HarvestSettings, fresh: bool) -> Manifest:
    """The manifest to continue: the one in ``folder`` if its settings are these, else a new one."""
    if fresh:
        folder.remove_all()
    existing = folder.manifest()
    if existing is None:
        return Manifest(settings)
    if existing.settings != settings:
        held = f"{existing.settings.model}: {', '.join(existing.settings.hooks)}"
        raise InputError(f"'{folder.url}' holds a different harvest ({held}); use another folder, or pass fresh")
    return existing
