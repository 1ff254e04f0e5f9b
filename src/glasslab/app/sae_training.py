"""Train an SAE for one layer from the workbench: first a measured estimate of the time, then a background
job with live progress (step, FVE, dead features) that can be cancelled.

Both run off the model worker (``Operation.off_worker``): glasslab's trainer runs in the job's thread and
only its forward passes (reading activations, the probe's, the held-out evaluation's) go to the worker,
one batch at a time and in turn with every other request, so the workbench keeps answering while an SAE
trains. The SAE is a TopK SAE on ``blocks.<layer>.resid_post``, written to the store (``store:NAME``)
through a hidden folder that is renamed into place only if the job was not cancelled: a cancelled
training leaves no SAE (the trainer keeps its checkpoint; the same training started again resumes).

A request with ``on_cluster`` trains data-parallel on the Ray cluster the server was started with
(``glasslab serve --cluster``; ``on_cluster.py``): the Ray workers load the model from its folder and run
the forward passes themselves, and only the held-out evaluation runs here, on the model worker.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..dictionaries.activations import rows_per_sequence
from ..dictionaries.train import TrainConfig, TrainingCancelled, default_name
from ..errors import InputError
from ..methods.features.estimate import estimate_training
from ..methods.features.training import TrainedSAE, train_sae
from ..model.model import Model
from ..operations import OPERATIONS as DECLARED
from ..operations.options import Options
from ..store import SAES, ArtifactKind, location, staging_folder
from .on_cluster import STARTED, check_cluster, followed
from .ops import Ctx, declared
from .schemas import TRAIN_HARVEST_TOKENS, WORKBENCH_TRAINING
from .state import Cancelled, ModelState, cancellable

MAX_MEMORY = 4 * 2**30  # bytes a workbench training may hold: the activation pool and the SAE with Adam
_training: set[tuple[str, str, str]] = set()  # (kind, model key, name) of trainings running now
_training_lock = threading.Lock()


class OnWorker:
    """The model as the trainer sees it: each forward pass runs on the model worker, in turn with other
    requests, and stops when the job is cancelled or the model was switched meanwhile. Tokenizing uses a
    private copy of the tokenizer (the worker may be using the model's at the same moment)."""

    def __init__(
        self,
        state: ModelState,
        model: Model,
        cancel: threading.Event,
        on_run: Callable[[int], None],
        what: str = "an SAE",
    ):
        self._state, self._model, self._cancel, self._on_run, self._what = state, model, cancel, on_run, what
        self.tokenizer = copy.deepcopy(model.tokenizer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def run(self, prompts, **options):
        def work(current: Model):
            if current is not self._model:
                raise InputError(f"the model was switched while training {self._what}; load it again and start over")
            with cancellable(current, self._cancel):
                return current.run(prompts, **options)

        result = self._state.run(f"training {self._what}", work, cancel=self._cancel)
        self._on_run(len(prompts))
        return result


TRAIN = DECLARED["sae-train"]
ESTIMATE = DECLARED["sae-train-estimate"]


def sae_training_plan(sizes: dict) -> dict:
    """The sizes the workbench proposes (``WORKBENCH_TRAINING``, with ``sizes`` over it), checked as a request."""
    plan = {**WORKBENCH_TRAINING, **sizes}
    TRAIN.http_options.model_validate({"layer": 0, **plan})
    return plan


def _harvest(body: Options) -> int:
    """Rows read from the model: the server holds them all in memory, so never 'the whole corpus'."""
    return body.harvest_tokens if body.harvest_tokens is not None else TRAIN_HARVEST_TOKENS


def _config(ctx: Ctx, body: Options) -> TrainConfig:
    """The trainer's settings for the request, checked against the model (layer, k, memory)."""
    if body.layer is None:
        raise InputError("layer: say which layer's resid_post the SAE reads")
    ctx.layer(body.layer)
    model = ctx.model
    d_in = model.d_model
    width = body.expansion * d_in
    if body.k > width:
        raise InputError(f"k: {body.k} is more than the SAE's {width} features; lower k or raise expansion")
    memory = 4 * d_in * (2 * _harvest(body) + 8 * width)  # pool (and its refill) + weights, grads, Adam
    if memory > MAX_MEMORY:
        raise InputError(
            f"this training would hold about {memory / 2**30:.1f} GiB in memory (the workbench allows "
            f"{MAX_MEMORY / 2**30:.0f}); lower harvest_tokens or expansion, or train with `glasslab sae train`"
        )
    return TrainConfig(
        hook=f"blocks.{body.layer}.resid_post",
        architecture="topk",
        expansion=body.expansion,
        k=body.k,
        tokens=body.tokens,
        harvest_tokens=_harvest(body),
        buffer_tokens=_harvest(body),  # every row read stays in the pool: the harvest is done once
        batch_size=body.batch_size,
        seed=body.seed,
        seq_len=min(128, model.context_length or 128),
    )


def _name(config: TrainConfig, body: Options, d_in: int) -> str:
    return body.name or f"{default_name(config, d_in)}-app"


def _plan(ctx: Ctx, config: TrainConfig, name: str, body: Options) -> dict[str, Any]:
    return {
        "layer": body.layer,
        "hook": config.hook,
        "name": f"store:{name}",
        "architecture": config.architecture,
        "d_sae": config.width(ctx.model.d_model),
        "k": config.k,
        "steps": config.steps,
        "batch_size": config.batch_size,
        "tokens": config.tokens,
        "harvest_tokens": config.harvest_tokens,
        "evaluate_tokens": body.evaluate_tokens,
        "seq_len": config.seq_len,
        "corpus": config.corpus,
    }


def estimate_op(ctx: Ctx, body: Options) -> dict:
    config = _config(ctx, body)
    name = _name(config, body, ctx.model.d_model)
    ctx.job.report(stage="measuring this machine: one batch of activations and a few training steps")
    model = OnWorker(ctx.state, ctx.model, ctx.job.cancel, lambda _n: None)
    estimate = estimate_training(model, config, evaluate_tokens=body.evaluate_tokens)  # type: ignore[arg-type]
    return {**estimate.to_dict(), "plan": _plan(ctx, config, name, body)}


class _Progress:
    """The job's stage, counts and live metrics as the training goes: reading activations, training steps,
    then the held-out evaluation."""

    def __init__(self, ctx: Ctx, config: TrainConfig, evaluate_tokens: int):
        self.job, self.config, self.evaluate_tokens = ctx.job, config, evaluate_tokens
        self.rows_per_sequence = rows_per_sequence(ctx.model, config.seq_len)
        self.phase, self.rows = "harvest", 0
        self._lock = threading.Lock()  # on a cluster, steps are shown from another thread
        self._report("reading activations from the model", 0, config.harvest_tokens)

    def _report(self, stage: str, done: int, total: int, metrics: dict | None = None) -> None:
        self.job.report(stage=stage, done=done, total=total, metrics=metrics)

    def forward(self, sequences: int) -> None:
        self.rows += sequences * self.rows_per_sequence
        if self.phase == "harvest":
            total = self.config.harvest_tokens
            self._report("reading activations from the model", min(self.rows, total), total)
        elif self.phase == "evaluate":
            self._report("evaluating on held-out text", min(self.rows, self.evaluate_tokens), self.evaluate_tokens)

    def step(self, step: int, metrics: dict[str, float]) -> None:
        if self.job.cancel.is_set():
            raise KeyboardInterrupt  # the trainer's way to stop: it writes a checkpoint and saves no SAE
        self.show_step(step, metrics)

    def show_step(self, step: int, metrics: dict[str, float]) -> None:
        shown = {key: metrics[key] for key in ("loss", "fve", "l0", "dead") if key in metrics}
        with self._lock:
            if self.phase == "evaluate":  # a cluster's last step, polled after the evaluation began
                return
            self.phase = "train"
            self._report("training", step, self.config.steps, shown)
        if step == self.config.steps:
            self.evaluating()

    def evaluating(self) -> None:
        """The held-out evaluation begins (once)."""
        with self._lock:
            if self.phase == "evaluate" or not self.evaluate_tokens:
                return
            self.phase, self.rows = "evaluate", 0
            self._report("evaluating on held-out text", 0, self.evaluate_tokens)

    def evaluation_forward(self, sequences: int) -> None:
        """A forward pass here while training on a cluster: the workers run the rest, so it is the evaluation's."""
        self.evaluating()
        self.forward(sequences)


def check_training(ctx: Ctx, body: Options) -> tuple[TrainConfig, str]:
    """The settings and the SAE's name, refused (400) for a bad layer or size, a name already taken or a
    cluster this server lacks."""
    config = _config(ctx, body)
    if body.on_cluster:
        check_cluster(ctx, config.batch_size)
    name = _name(config, body, ctx.model.d_model)
    if location(SAES, ctx.model.key, name).exists():
        raise InputError(
            f"store:{name} exists already for {ctx.model.name}; pick it in the SAE list, or give another name"
        )
    return config, name


@contextlib.contextmanager
def staged(ctx: Ctx, kind: ArtifactKind, name: str, what: str) -> Iterator[Path]:
    """A hidden folder to train ``what`` into, renamed to ``store:name`` of ``kind`` when the ``with`` block ends
    unless the job was cancelled meanwhile; one training of a name at a time. A cancelled training
    (``TrainingCancelled``, ``Cancelled``) leaves nothing: the trainer keeps its checkpoint."""
    final = location(kind, ctx.model.key, name)
    key = (kind.name, ctx.model.key, name)
    with _training_lock:
        if key in _training:
            raise InputError(f"store:{name} is being trained already; wait for that job or cancel it")
        _training.add(key)
    staging = staging_folder(final)  # hidden from listings; removed by a later save if this process dies
    try:
        yield staging
        if not ctx.job.commit():
            raise Cancelled("the job was cancelled")
        staging.rename(final)
    except TrainingCancelled:
        raise Cancelled(f"the training was cancelled; no {what} was saved") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with _training_lock:
            _training.discard(key)


def _train(ctx: Ctx, config: TrainConfig, name: str, body: Options, staging: Path) -> TrainedSAE:
    """Train into ``staging``: here (the forward passes on the model worker) or on the server's cluster."""
    progress = _Progress(ctx, config, body.evaluate_tokens)
    settings = dict(
        name=name,
        out=staging,
        evaluate_tokens=body.evaluate_tokens,
        evaluate_loss_tokens=0,  # losses need four full passes each: `glasslab sae eval` measures them
        command=f"workbench: train an SAE for layer {body.layer}",
    )
    if not body.on_cluster:
        worker_model = OnWorker(ctx.state, ctx.model, ctx.job.cancel, progress.forward)
        return train_sae(worker_model, config, on_step=progress.step, **settings)  # type: ignore[arg-type]
    ctx.job.report(stage=STARTED, done=0, total=0)
    driver_model = OnWorker(ctx.state, ctx.model, ctx.job.cancel, progress.evaluation_forward)
    with followed(ctx, progress.show_step) as on_step:
        return train_sae(driver_model, config, on_step=on_step, cluster=ctx.cluster, **settings)  # type: ignore[arg-type]


def train_op(ctx: Ctx, body: Options) -> dict:
    config, name = check_training(ctx, body)
    with staged(ctx, SAES, name, "SAE") as staging:
        trained = _train(ctx, config, name, body, staging)
    return {
        "kind": "sae_training",
        "name": f"store:{name}",
        "plan": _plan(ctx, config, name, body),
        "seconds": trained.training["seconds"],
        "steps": trained.training["steps"],
        "tokens_harvested": trained.training["tokens_harvested"],
        "final": trained.training["final"],
        "dead_fraction_training": trained.training["dead_fraction_training"],
        "workers": trained.training.get("workers"),  # Ray workers that trained it; None: trained here
        "evaluation": trained.evaluation,
    }


OPERATIONS = [
    declared(
        ESTIMATE,
        estimate_op,
        deterministic=lambda body: False,
        off_worker=True,
        job_only=True,
        precheck=_config,
    ),
    declared(
        TRAIN,
        train_op,
        deterministic=lambda body: False,
        off_worker=True,
        job_only=True,
        precheck=check_training,
    ),
]
