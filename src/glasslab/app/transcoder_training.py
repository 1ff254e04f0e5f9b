"""Building a transcoder set from the workbench (the attribution-graph panel's "Build transcoders"): a measured
estimate, then a background job with progress that can be cancelled; and the set's evaluation and the list
of sets, answered afresh when a set was saved meanwhile.

The training runs as an SAE training does (``sae_training``): off the model worker, its forward passes sent
to the worker one batch at a time (``OnWorker``), written through a hidden folder renamed into the store only
if the job was not cancelled (``staged``). A request trains from the shipped text; its sizes are bounded by
the declaration and, here, by the memory the server would hold (every layer's shuffle buffer and Adam state).
"""

from __future__ import annotations

from typing import Any

from ..dictionaries.activations import rows_per_sequence
from ..dictionaries.transcoder_estimate import estimate_transcoder_training
from ..dictionaries.transcoder_train import TranscoderTrainConfig, default_set_name
from ..errors import InputError
from ..methods.features.transcoder_training import train_transcoder_set
from ..operations import OPERATIONS as DECLARED
from ..operations.options import Options
from ..operations.transcoders import train_config
from ..store import TRANSCODERS, location
from .graphs import transcoder_reads
from .ops import Ctx, declared
from .sae_training import MAX_MEMORY, OnWorker, staged

TRAIN = DECLARED["transcoders-train"]
ESTIMATE = DECLARED["transcoders-estimate"]
WHAT = "transcoders"


def _config(ctx: Ctx, body: Options) -> TranscoderTrainConfig:
    """The trainer's settings for the request, checked against the model (layers, k, memory)."""
    model = ctx.model
    sizes = body.model_dump(exclude={"name", "evaluate_tokens"})
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


def _plan(ctx: Ctx, config: TranscoderTrainConfig, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "architecture": config.architecture,
        "d_sae": config.width(ctx.model.d_model),
        "k": config.k,
        "layers": list(config.layers_of(ctx.model)),
        "steps": config.steps,
        "tokens": config.tokens,
        "harvest_tokens": config.harvest_tokens,
    }


def estimate_op(ctx: Ctx, body: Options) -> dict:
    config = _config(ctx, body)
    ctx.job.report(stage="measuring this machine: a few batches of activations and training steps")
    model = OnWorker(ctx.state, ctx.model, ctx.job.cancel, lambda _n: None, WHAT)
    estimate = estimate_transcoder_training(model, config)  # type: ignore[arg-type]
    return {**estimate.to_dict(), "plan": _plan(ctx, config, default_set_name(config, ctx.model))}


def check_training(ctx: Ctx, body: Options) -> tuple[TranscoderTrainConfig, str]:
    """The settings and the set's name, refused (400) for bad sizes or a name already taken."""
    config = _config(ctx, body)
    name = body.name or default_set_name(config, ctx.model)
    if location(TRANSCODERS, ctx.model.key, name).exists():
        raise InputError(
            f"a transcoder set '{name}' exists already for {ctx.model.name}; pick it, or give another name"
        )
    return config, name


class _Progress:
    """The job's stage as the training goes: filling the shuffle buffer, the steps (with the layers' mean
    figures), then the held-out evaluation."""

    def __init__(self, ctx: Ctx, config: TranscoderTrainConfig):
        self.job, self.config = ctx.job, config
        self.rows_per_sequence = rows_per_sequence(ctx.model, config.seq_len)
        self.rows, self.training = 0, False
        self.first = min(config.buffer_tokens, config.harvest_tokens or config.buffer_tokens)
        self.job.report(stage="reading text through the model", done=0, total=self.first)

    def forward(self, sequences: int) -> None:
        self.rows += sequences * self.rows_per_sequence
        if not self.training:
            self.job.report(done=min(self.rows, self.first))

    def step(self, step: int, metrics: dict[int, dict[str, float]]) -> None:
        if self.job.cancel.is_set():
            raise KeyboardInterrupt  # the trainer's way to stop: it writes a checkpoint and saves no set
        self.training = True
        shown = {
            key: sum(layer[key] for layer in metrics.values()) / len(metrics)
            for key in ("loss", "fve", "l0", "dead")
            if all(key in layer for layer in metrics.values())
        }
        self.job.report(stage="training", done=step, total=self.config.steps, metrics=shown)

    def evaluating(self) -> None:
        self.job.report(stage="evaluating on held-out text", done=0, total=None)


def train_op(ctx: Ctx, body: Options) -> dict:
    config, name = check_training(ctx, body)
    with staged(ctx, TRANSCODERS, name, "transcoder set") as staging:
        progress = _Progress(ctx, config)
        trained = train_transcoder_set(
            OnWorker(ctx.state, ctx.model, ctx.job.cancel, progress.forward, WHAT),  # type: ignore[arg-type]
            config,
            name=name,
            out=staging,
            evaluate_tokens=body.evaluate_tokens,
            on_step=progress.step,
            on_evaluate=progress.evaluating,
            command="workbench: build transcoders",
        )
    facts = trained.training
    return {
        "kind": "transcoder_training",
        "name": name,
        "plan": _plan(ctx, config, name),
        **{key: facts[key] for key in ("seconds", "steps", "tokens_trained", "tokens_harvested", "d_sae", "layers")},
        "evaluation": trained.evaluation,
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
