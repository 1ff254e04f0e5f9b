"""Building a transcoder set from the workbench (the attribution-graph panel's "Build transcoders"): a measured
estimate, then a background job with progress that can be cancelled; and the set's evaluation and the list
of sets, answered afresh when a set was saved meanwhile.

The training runs as an SAE training does (``sae_training``): off the model worker, its forward passes sent
to the worker one batch at a time (``OnWorker``), written through a hidden folder renamed into the store only
if the job was not cancelled (``staged``). A request trains from the shipped text; its sizes are bounded by
the declaration and, here, by the memory the server would hold (every layer's shuffle buffer and Adam state).

A request with ``on_cluster`` runs on the server's Ray cluster (``glasslab serve --cluster``) in two phases:
the cluster's workers harvest every trained layer's ``mlp.in`` and ``mlp_out`` into a hidden folder beside the
set's staging folder, then train the set from it data-parallel (``train_transcoders(cluster=)``), and the
harvest is deleted whatever happens. Only the held-out evaluation runs here. A cancel stops either phase
(``on_cluster.py``); a cancelled or failed training's checkpoint is deleted with the harvest it read.

The harvest is stored in bfloat16 (``HARVEST_DTYPE``): half float32's size, with float32's range (float16's
would overflow on large activations). The training reads it back as float32, so every input and target is
the model's activation rounded to 8 significant bits (a relative error under 0.4%), far below what a
transcoder reconstructs; the held-out evaluation reads the model's own activations. Its size (rows x layers x
2 x d_model x 2 bytes) is shown in the plan and progress, and a request whose harvest would not fit in the
store's free space, with ``DISK_MARGIN`` to spare, is refused before anything runs.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..activations import harvest
from ..dictionaries.activations import rows_per_sequence
from ..dictionaries.transcoder_estimate import estimate_transcoder_training
from ..dictionaries.transcoder_rows import pair_hooks
from ..dictionaries.transcoder_train import (
    TranscoderTrainConfig,
    default_set_name,
    layer_means,
    transcoder_checkpoints,
)
from ..errors import InputError
from ..methods.features.transcoder_training import TrainedTranscoders, train_transcoder_set
from ..operations import OPERATIONS as DECLARED
from ..operations.options import Options
from ..operations.transcoders import train_config
from ..store import TRANSCODERS, location, staging_folder
from .graphs import transcoder_reads
from .on_cluster import STARTED, check_cluster, check_workers, claimed, followed, stopped_on_cancel
from .ops import Ctx, declared
from .sae_training import MAX_MEMORY, OnWorker, staged

TRAIN = DECLARED["transcoders-train"]
ESTIMATE = DECLARED["transcoders-estimate"]
WHAT = "transcoders"
HARVEST_SHARDS = 16  # a cluster harvest's shards: work for every worker, and progress as each one lands
HARVEST_DTYPE = "bfloat16"
_HARVEST_VALUE_BYTES = 2  # bfloat16
_ROW_EXTRA_BYTES = 8  # each row's token id and document index (int32 each)
DISK_MARGIN = 0.1  # the free space a cluster harvest leaves: this share of its size, and at least 1 GiB


def _config(ctx: Ctx, body: Options) -> TranscoderTrainConfig:
    """The trainer's settings for the request, checked against the model (layers, k, memory)."""
    model = ctx.model
    sizes = body.model_dump(exclude={"name", "evaluate_tokens", "on_cluster"})
    sizes["seq_len"] = min(sizes["seq_len"], model.context_length or sizes["seq_len"])
    config = train_config(**sizes)
    layers = config.layers_of(model)
    width = config.width(model.d_model)
    if config.k > width:
        raise InputError(f"k: {config.k} is more than the {width} features per layer; lower k or raise d_sae")
    d = model.d_model
    pool = 2 * config.buffer_tokens * 2 * d  # every layer's (input, output) pairs, and the refill beside them
    weights = 4 * (2 * d * width + d * d)  # encoder, decoder and skip, with gradients and Adam's two moments
    memory = 4 * len(layers) * (pool + weights)
    if memory > MAX_MEMORY:
        raise InputError(
            f"this training would hold about {memory / 2**30:.1f} GiB in memory (the workbench allows "
            f"{MAX_MEMORY / 2**30:.0f}); lower buffer_tokens or d_sae, or train with `glasslab transcoders train`"
        )
    return config


def _plan(ctx: Ctx, config: TranscoderTrainConfig, name: str, on_cluster: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "architecture": config.architecture,
        "d_sae": config.width(ctx.model.d_model),
        "k": config.k,
        "layers": list(config.layers_of(ctx.model)),
        "steps": config.steps,
        "tokens": config.tokens,
        "harvest_tokens": config.harvest_tokens,
        "harvest_bytes": harvest_bytes(ctx, config) if on_cluster else None,  # the cluster's temporary harvest
    }


def harvest_bytes(ctx: Ctx, config: TranscoderTrainConfig) -> int:
    """The size of a cluster build's harvest: every trained layer's ``mlp.in`` and ``mlp_out`` rows."""
    per_sequence = rows_per_sequence(ctx.model, config.seq_len)
    rows = math.ceil((config.harvest_tokens or config.tokens) / per_sequence) * per_sequence
    values = len(config.layers_of(ctx.model)) * 2 * ctx.model.d_model
    return rows * (values * _HARVEST_VALUE_BYTES + _ROW_EXTRA_BYTES)


def free_bytes(folder: Path) -> int:
    """Free space on the disk holding ``folder`` (or its nearest existing parent)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _check_disk(ctx: Ctx, config: TranscoderTrainConfig, name: str) -> None:
    """Refuse (400) a cluster build whose harvest would not fit in the store with the margin to spare."""
    size = harvest_bytes(ctx, config)
    free = free_bytes(location(TRANSCODERS, ctx.model.key, name).parent)
    if size + max(DISK_MARGIN * size, 2**30) > free:
        raise InputError(
            f"the cluster's harvest of {len(config.layers_of(ctx.model))} layers' MLP inputs and outputs would take "
            f"{_size(size)} in the store, which has {_size(free)} free (with {DISK_MARGIN:.0%} and at least 1 GiB to "
            "spare); lower harvest_tokens or train fewer layers"
        )


def _size(n_bytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:,.1f} {unit}"
    return f"{int(n_bytes)} bytes"


def estimate_op(ctx: Ctx, body: Options) -> dict:
    config = _config(ctx, body)
    ctx.job.report(stage="measuring this machine: a few batches of activations and training steps")
    model = OnWorker(ctx.state, ctx.model, ctx.job.cancel, lambda _n: None, WHAT)
    estimate = estimate_transcoder_training(model, config)  # type: ignore[arg-type]
    return {**estimate.to_dict(), "plan": _plan(ctx, config, default_set_name(config, ctx.model))}


def check_training(ctx: Ctx, body: Options) -> tuple[TranscoderTrainConfig, str]:
    """The settings and the set's name, refused (400) for bad sizes, a name already taken or a cluster this
    server lacks."""
    config = _config(ctx, body)
    name = body.name or default_set_name(config, ctx.model)
    if location(TRANSCODERS, ctx.model.key, name).exists():
        raise InputError(
            f"a transcoder set '{name}' exists already for {ctx.model.name}; pick it, or give another name"
        )
    if body.on_cluster:
        check_cluster(ctx, config.batch_size)
        _check_disk(ctx, config, name)
        if transcoder_checkpoints(ctx.model, name).latest() is not None:  # a cluster training reads another harvest
            raise InputError(
                f"'{name}' has a checkpoint of a training started here; start it again without the cluster to "
                "resume it, or give another name"
            )
    return config, name


class _Progress:
    """The job's stage as the training goes: filling the shuffle buffer (on a cluster: the harvest), the steps
    (with the layers' mean figures), then the held-out evaluation."""

    def __init__(self, ctx: Ctx, config: TranscoderTrainConfig):
        self.job, self.config = ctx.job, config
        self.rows_per_sequence = rows_per_sequence(ctx.model, config.seq_len)
        self.rows, self.training, self.harvest_rows = 0, False, 0
        self.first = min(config.buffer_tokens, config.harvest_tokens or config.buffer_tokens)

    def reading(self) -> None:
        self.job.report(stage="reading text through the model", done=0, total=self.first)

    def harvesting(self, rows: int, layers: int, size: int) -> None:
        self.harvest_rows = rows
        stage = (
            f"harvesting {layers} layers' MLP inputs and outputs on the Ray cluster ({_size(size)} in the store, "
            "deleted after the training)"
        )
        self.job.report(stage=stage, done=0, total=rows)

    def harvested(self, rows: int) -> None:
        self.rows += rows
        self.job.report(done=min(self.rows, self.harvest_rows))

    def forward(self, sequences: int) -> None:
        self.rows += sequences * self.rows_per_sequence
        if not self.training:
            self.job.report(done=min(self.rows, self.first))

    def step(self, step: int, metrics: dict[int, dict[str, float]]) -> None:
        if self.job.cancel.is_set():
            raise KeyboardInterrupt  # the trainer's way to stop: it writes a checkpoint and saves no set
        self.show_step(step, metrics)

    def show_step(self, step: int, metrics: dict[int, dict[str, float]]) -> None:
        self.training = True
        self.job.report(stage="training", done=step, total=self.config.steps, metrics=layer_means(metrics))

    def evaluating(self) -> None:
        self.job.report(stage="evaluating on held-out text", done=0, total=None)


def _train_here(ctx: Ctx, config: TranscoderTrainConfig, name: str, body: Options, staging: Path) -> TrainedTranscoders:
    """Train into ``staging`` in this process, the model's forward passes on the model worker."""
    progress = _Progress(ctx, config)
    progress.reading()
    return train_transcoder_set(
        OnWorker(ctx.state, ctx.model, ctx.job.cancel, progress.forward, WHAT),  # type: ignore[arg-type]
        config,
        name=name,
        out=staging,
        evaluate_tokens=body.evaluate_tokens,
        on_step=progress.step,
        on_evaluate=progress.evaluating,
        command="workbench: build transcoders",
    )


def _train_on_cluster(
    ctx: Ctx, config: TranscoderTrainConfig, name: str, body: Options, staging: Path
) -> TrainedTranscoders:
    """Harvest on the cluster into a hidden folder beside ``staging``, train from it there into ``staging``,
    and delete the harvest (and, if the training did not finish, its checkpoint, which names that harvest)."""
    progress = _Progress(ctx, config)
    driver = OnWorker(ctx.state, ctx.model, ctx.job.cancel, lambda _n: None, WHAT)  # the evaluation's passes
    layers = config.layers_of(ctx.model)
    rows = config.harvest_tokens or config.tokens
    folder = staging_folder(staging.parent / f"{name}.harvest")  # hidden; removed by a later save if we die
    with claimed(ctx):
        try:
            check_workers(ctx, config.batch_size)  # the count a server started without --workers finds on Ray
            progress.harvesting(rows, len(layers), harvest_bytes(ctx, config))
            with stopped_on_cancel(ctx, "harvest"):
                harvest(
                    driver,  # type: ignore[arg-type]  (only its tokenizer and sizes are used here)
                    pair_hooks(layers),
                    str(folder),
                    corpus=config.corpus,
                    tokens=rows,
                    seq_len=config.seq_len,
                    shard_tokens=math.ceil(rows / HARVEST_SHARDS),
                    model_batch=config.model_batch,
                    dtype=HARVEST_DTYPE,
                    cluster=ctx.cluster,
                    on_shard=lambda shard: progress.harvested(shard.rows),
                )
            ctx.job.report(stage=STARTED, done=0, total=0)
            with followed(ctx, progress.show_step) as on_step:
                return train_transcoder_set(
                    driver,  # type: ignore[arg-type]
                    replace(config, activations=str(folder)),
                    name=name,
                    out=staging,
                    evaluate_tokens=body.evaluate_tokens,
                    on_step=on_step,
                    on_evaluate=progress.evaluating,
                    command="workbench: build transcoders on the Ray cluster",
                    cluster=ctx.cluster,
                )
        except BaseException:
            transcoder_checkpoints(ctx.model, name).clear()  # it reads the harvest deleted below: never resumable
            raise
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def train_op(ctx: Ctx, body: Options) -> dict:
    config, name = check_training(ctx, body)
    with staged(ctx, TRANSCODERS, name, "transcoder set") as staging:
        train = _train_on_cluster if body.on_cluster else _train_here
        trained = train(ctx, config, name, body, staging)
    facts = trained.training
    return {
        "kind": "transcoder_training",
        "name": name,
        "plan": _plan(ctx, config, name, body.on_cluster),
        **{key: facts[key] for key in ("seconds", "steps", "tokens_trained", "tokens_harvested", "d_sae", "layers")},
        "evaluation": trained.evaluation,
        "workers": facts.get("workers"),  # Ray workers that trained it; None: trained here
    }


OPERATIONS = [
    declared(ESTIMATE, estimate_op, deterministic=lambda body: False, off_worker=True, job_only=True, precheck=_config),
    declared(
        TRAIN, train_op, deterministic=lambda body: False, off_worker=True, job_only=True, precheck=check_training
    ),
    declared(DECLARED["transcoders-eval"], reads=transcoder_reads),
    # A feature's dashboard is answered afresh when the set's files change (a precompute writes its labels).
    declared(DECLARED["transcoders-dashboard"], reads=transcoder_reads),
    # Sets are built and deleted while the server runs: listed afresh on every request.
    declared(DECLARED["transcoders-list"], deterministic=lambda body: False),
]
