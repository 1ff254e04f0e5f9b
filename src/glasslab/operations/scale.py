"""Corpus-scale jobs that exist for scale alone (issue 21): harvesting activations into a sharded store,
locally or on a Ray cluster (``--cluster local|auto|ADDRESS``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ..activations import Harvest, harvest
from ..model.model import Model
from .options import Cli, Options
from .spec import OperationSpec

ClusterAddress = Annotated[
    str | None,
    StringConstraints(min_length=1, max_length=500),
    Field(description="Run on Ray: local (start one here), auto (the running cluster) or an address (default: here)."),
]
Workers = Annotated[
    int | None,
    Field(ge=1, le=100_000, description="Ray workers (default: one per CPU, or per GPU with --worker-gpus)."),
]
WorkerGpus = Annotated[
    float, Field(ge=0.0, le=64.0, description="GPUs each Ray worker takes (the model runs on cuda).")
]


class HarvestOptions(Options):
    hooks: Annotated[
        str,
        StringConstraints(min_length=1, max_length=20_000),
        Field(description="Hooks to harvest, comma-separated (globs allowed: blocks.*.resid_post)."),
        Cli(argument=True),
    ]
    out: Annotated[
        str,
        StringConstraints(min_length=1, max_length=2000),
        Field(description="Folder or fsspec URL (s3://..., gs://...) to write the shards and harvest.json to."),
        Cli(("--out", "-o")),
    ]
    corpus: Annotated[
        str, Field(min_length=1, max_length=1000, description="english, pydocs, a .txt/.jsonl file or folder, hf:NAME.")
    ] = "builtin"
    tokens: Annotated[int, Field(ge=1, le=10**12, description="Activation rows to harvest (tokens after BOS).")] = (
        1_000_000
    )
    seq_len: Annotated[int, Field(ge=2, le=1_000_000, description="Tokens per packed sequence.")] = 128
    shard_tokens: Annotated[int, Field(ge=1, le=10**9, description="Rows per shard (about).")] = 65_536
    model_batch: Annotated[int, Field(ge=1, le=4096, description="Sequences per forward pass.")] = 16
    store_dtype: Annotated[
        Literal["float32", "float16", "bfloat16"], Field(description="How rows are stored (16-bit halves the size).")
    ] = "float32"
    cluster: ClusterAddress = None
    workers: Workers = None
    worker_gpus: WorkerGpus = 0.0
    fresh: Annotated[
        bool, Field(description="Delete a different harvest in the folder and start over."), Cli(("--fresh",))
    ] = False


def harvest_activations(
    model: Model,
    *,
    hooks: str,
    out: str,
    corpus: str = "builtin",
    tokens: int = 1_000_000,
    seq_len: int = 128,
    shard_tokens: int = 65_536,
    model_batch: int = 16,
    store_dtype: str = "float32",
    cluster: str | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
    fresh: bool = False,
) -> Harvest:
    """Harvest the corpus's train split at ``hooks`` into ``out``; the same command again resumes it."""
    names = [name.strip() for name in hooks.split(",") if name.strip()]
    return harvest(
        model, names, out, corpus=corpus, tokens=tokens, seq_len=seq_len, shard_tokens=shard_tokens,
        model_batch=model_batch, dtype=store_dtype, cluster=cluster, workers=workers, worker_gpus=worker_gpus,
        fresh=fresh,
    )  # fmt: skip


GROUP = "scale"
OPERATIONS = [
    OperationSpec(
        "harvest",
        HarvestOptions,
        harvest_activations,
        Harvest,
        "Harvest activations at hooks into shards with a manifest (resumable; --cluster runs it on Ray).",
        GROUP,
        long=True,
        # It writes to a folder or URL on this machine, which a request never may name.
        http=False,
    ),
]
