"""Train an SAE on any hook of a model, from a corpus: TopK, JumpReLU or ReLU + L1 (the job: harvest,
loop, checkpoints, save; ``glasslab.methods.features.training.train_sae`` adds the held-out evaluation).

Activations stream from the model (forward stopped after the hooked layer, BOS left out) through a
bounded shuffle buffer (``activations.py``). The optimisation is ``glasslab.dictionaries.training``'s,
the same for every architecture: the SAE module trains its own parameters through its architecture's
loss (``glasslab.dictionaries.architectures``, where each paper's gradients are written out). Inputs are
scaled so their mean squared norm is ``d_in``; the scale is folded into the saved weights so the saved
SAE reads raw activations and needs no normaliser. Decoder rows are kept at unit norm.

Training is resumable (an atomic checkpoint every ``checkpoint_every`` steps and on Ctrl-C; running
the same training again continues where it stopped, with the same result as an uninterrupted run) and
the SAE is written once, atomically, at the end, in SAELens's layout with ``training.json`` beside it.
The loop itself is ``sae_loop.py``'s; ``cluster=`` runs it data-parallel on Ray Train workers
(``parallel.py``) and the SAE is saved here all the same.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError
from ..model.model import Model
from ..store import SAE_CHECKPOINTS, SAES, Checkpoints, location, save
from .autograd import JumpReLU, Step, TopKEncode, decode_sparse
from .files import write_sae_files
from .fit import hook_width
from .registry import dictionary_class, trainable_architectures
from .sae import SAE, geometric_median
from .sae_loop import Trained, TrainingCancelled, run_training, sae_config
from .transcoder import Transcoder

if TYPE_CHECKING:
    from ..cluster import ClusterSpec

__all__ = [
    "TRAINABLE",
    "JumpReLU",
    "Step",
    "TopKEncode",
    "TrainConfig",
    "TrainingCancelled",
    "TrainingRun",
    "checkpoint_folder",
    "decode_sparse",
    "default_name",
    "geometric_median",
    "to_sae",
    "train_dictionary",
]


def trainable_saes() -> tuple[str, ...]:
    """The registered architectures this job trains: every trainable kind but transcoders, which need an
    output to predict (``transcoder_train`` trains them)."""
    return tuple(name for name in trainable_architectures() if not issubclass(dictionary_class(name), Transcoder))


TRAINABLE = trainable_saes()  # the built-in ones; TrainConfig asks the registry each time


# -- configuration --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training's result (a checkpoint resumes only with the same config)."""

    hook: str
    architecture: str = "topk"
    expansion: int = 8  # d_sae = expansion * d_in, unless d_sae is given
    d_sae: int | None = None
    k: int = 32  # topk: active features per token
    tokens: int = 2_000_000  # activation rows the SAE trains on (steps * batch_size)
    harvest_tokens: int | None = None  # rows read from the model at most (None: as many as the corpus gives)
    activations: str | None = None  # a harvest (folder or URL) to read the rows from instead of the model
    buffer_tokens: int = 500_000  # rows held in memory for shuffling (and reused once the corpus ends)
    batch_size: int = 4096
    lr: float = 1e-3
    warmup: float = 0.02  # fraction of steps with a linear lr warm-up
    decay: float = 0.3  # fraction of steps at the end with a linear decay to 0
    seed: int = 0
    corpus: str = "builtin"
    seq_len: int = 128
    model_batch: int = 16  # sequences per forward pass while harvesting
    head_index: int | None = None
    # A feature silent this long counts as dead and gets the AuxK loss. Short, so that training's "dead" is
    # at least as strict as a held-out reading of a few ten thousand tokens: at 200,000, 20.6% of layer 6's
    # features never fired on the default model's 33k-token test split; at 16,384, 5.2% (docs/sae.md).
    dead_after_tokens: int = 16_384
    aux_k: int = 256
    aux_coefficient: float = 1 / 32
    l1_coefficient: float = 5.0  # standard
    l0_coefficient: float = 0.5  # jumprelu
    bandwidth: float = 0.05  # jumprelu: the STE kernel's width (in normalised units)
    init_threshold: float = 0.2  # jumprelu

    def __post_init__(self) -> None:
        self.check_architecture()
        checks = {
            "tokens": self.tokens,
            "batch_size": self.batch_size,
            "buffer_tokens": self.buffer_tokens,
            "expansion": self.expansion,
            "k": self.k,
            "model_batch": self.model_batch,
            "dead_after_tokens": self.dead_after_tokens,
        }
        bad = [f"{name}={value}" for name, value in checks.items() if value < 1]
        if bad or not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"SAE training settings must be positive: {', '.join(bad) or f'lr={self.lr}'}")
        if self.tokens < self.batch_size:
            raise InputError(f"tokens ({self.tokens}) must be at least one batch ({self.batch_size})")
        if not (0 <= self.warmup < 1 and 0 <= self.decay <= 1 and self.warmup + self.decay <= 1):
            raise InputError("warmup and decay are fractions of the steps that add up to at most 1")

    def check_architecture(self) -> None:
        trainable = trainable_saes()
        if self.architecture not in trainable:
            raise InputError(f"glasslab trains {', '.join(trainable)} SAEs, not '{self.architecture}'")

    @property
    def steps(self) -> int:
        return self.tokens // self.batch_size

    def width(self, d_in: int) -> int:
        return self.d_sae or self.expansion * d_in

    def lr_at(self, step: int) -> float:
        """Linear warm-up, constant, then linear decay to 0 (a function of the step only, so resumable)."""
        steps = self.steps
        warm = max(1, round(self.warmup * steps))
        if step < warm:
            return self.lr * (step + 1) / warm
        start = steps - round(self.decay * steps)
        if step >= start:
            return self.lr * (steps - step) / max(1, steps - start)
        return self.lr


# -- the training job -------------------------------------------------------------------------------
def default_name(cfg: TrainConfig, d_in: int) -> str:
    """e.g. ``blocks.6.resid_post-topk-5120-k32``: hook, architecture, width (and k)."""
    k = f"-k{cfg.k}" if dictionary_class(cfg.architecture).uses_k else ""
    head = f"-head{cfg.head_index}" if cfg.head_index is not None else ""
    return f"{cfg.hook}{head}-{cfg.architecture}-{cfg.width(d_in)}{k}"


def checkpoint_folder(model: Model, name: str) -> Path:
    return location(SAE_CHECKPOINTS, model.key, name)


def checkpoints_of(model: Model, name: str) -> Checkpoints:
    """The training's checkpoints (``step-<N>/`` folders with manifests, the newest kept)."""
    return Checkpoints(checkpoint_folder(model, name), SAE_CHECKPOINTS, model.key)


@dataclass(frozen=True)
class TrainingRun:
    """A finished training: where the SAE was saved, the record written beside it and its evaluation."""

    path: Path
    training: dict[str, Any]
    evaluation: dict[str, Any] | None


def train_dictionary(
    model: Model,
    config: TrainConfig,
    *,
    name: str | None = None,
    out: str | Path | None = None,
    documents: Iterable[str] | None = None,
    evaluate: Callable[[SAE], dict[str, Any] | None] | None = None,
    checkpoint_every: int = 100,
    fresh: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    command: str | None = None,
    cluster: str | ClusterSpec | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
) -> TrainingRun:
    """Train an SAE on ``config.hook`` of ``model`` and save it (SAELens layout) to the store or ``out``.

    ``documents`` overrides the corpus text (tests); ``on_step(step, metrics)`` is called after each step
    (raise KeyboardInterrupt in it to cancel). An existing checkpoint of the same name and config is
    resumed unless ``fresh``. ``evaluate(sae)`` measures the trained SAE before it is saved (the methods
    layer's held-out evaluation, ``glasslab.methods.features.training.train_sae``); its record is written
    beside the SAE in ``training.json``.

    ``cluster`` (``local``, ``auto`` or an address; None: this process) trains data-parallel on ``workers``
    Ray Train workers (``parallel.py``; ``worker_gpus`` each, for the model's forward passes): the same loop
    on every worker, each on an equal slice of every batch, so ``config.batch_size`` must divide among them.
    There ``on_step`` runs on every worker (it must be picklable; each sees the same metrics); the SAE is
    saved and evaluated here.
    """
    d_in = hook_width(model, config.hook, config.head_index)
    sae_config(model, config, d_in)  # a config the architecture refuses fails here
    name = name or default_name(config, d_in)
    if "/" in name or name.startswith("."):
        raise InputError(f"SAE name '{name}' must be a plain name (no '/', not starting with '.')")
    final = Path(out).expanduser() if out else location(SAES, model.key, name)  # a bad name fails here, not after
    checkpoints = checkpoints_of(model, name)
    if fresh:
        checkpoints.clear()
    spec = _distributed(cluster, workers, worker_gpus)
    if spec is not None:
        from .parallel import train_on_cluster  # Ray only for a cluster

        trained = train_on_cluster(spec, model, config, name, documents, checkpoint_every, on_step)
    else:
        trained = run_training(model, config, checkpoints, documents, checkpoint_every, on_step)
    sae, state = trained.sae, trained.state
    sae.finish_training(state.scale)
    evaluation = evaluate(sae) if evaluate is not None else None
    training = _training_record(config, trained, d_in, name, command)
    if spec is not None:
        training["workers"] = trained.workers
    record = {**training, "evaluation": evaluation}
    density = state.fire_counts.double() / max(1, state.step * config.batch_size)
    summary = {"hook": config.hook, "architecture": config.architecture, "d_sae": sae.d_sae, "steps": state.step}
    with save(SAES, model.key, final if out else name, summary=summary, name=name) as staging:
        write_sae_files(
            sae,
            staging,
            extra_files={"training.json": (json.dumps(record, indent=2) + "\n").encode()},
            sparsity=torch.log10(density.clamp_min(1e-10)).float(),
        )
    checkpoints.clear()
    return TrainingRun(final, training, evaluation)


def _distributed(cluster: str | ClusterSpec | None, workers: int | None, worker_gpus: float) -> ClusterSpec | None:
    """The cluster to train on, or None for this process (Ray is not even imported then)."""
    if cluster is None:
        from ..cluster.connect import check_cluster_options

        check_cluster_options(cluster, workers, worker_gpus)  # workers without a cluster: a one-line error
        return None
    from ..cluster import cluster_spec

    spec = cluster_spec(cluster, workers, worker_gpus)
    return spec if spec.distributed else None


def to_sae(config: TrainConfig, params: SAE, scale: float, *, model_name: str | None, d_in: int) -> SAE:
    """Deprecated: a training SAE folds its input scale itself, ``sae.finish_training(scale)``."""
    warnings.warn(
        "glasslab.dictionaries.train.to_sae is deprecated; use SAE.finish_training(scale) on the SAE being trained",
        DeprecationWarning,
        stacklevel=2,
    )
    sae = copy.deepcopy(params)
    sae.finish_training(scale)
    return sae


def _training_record(
    config: TrainConfig, trained: Trained, d_in: int, name: str, command: str | None
) -> dict[str, Any]:
    state = trained.state
    density = state.fire_counts.double() / max(1, state.step * config.batch_size)
    return {
        "name": name,
        "command": command,
        "config": asdict(config),
        "d_in": d_in,
        "d_sae": trained.sae.d_sae,
        "steps": state.step,
        "tokens_trained": state.step * config.batch_size,
        "tokens_harvested": trained.harvested,
        "epochs_over_pool": trained.epochs,
        "input_scale": state.scale,
        "seconds": round(state.seconds, 1),
        "cpu_seconds": round(state.cpu_seconds, 1),
        "final": state.history[-1] if state.history else None,
        "dead_fraction_training": float((state.since_fired >= config.dead_after_tokens).float().mean()),
        "never_fired_fraction_training": float((density == 0).float().mean()),
        "history": state.history,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
