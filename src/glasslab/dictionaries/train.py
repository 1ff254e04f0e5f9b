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
"""

from __future__ import annotations

import copy
import json
import math
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data import load_corpus
from ..errors import GlasslabError, InputError
from ..model.model import Model
from ..progress import progress_enabled
from ..store import SAE_CHECKPOINTS, SAES, Checkpoints, location, save
from .activations import ActivationStream, ShuffleBuffer
from .autograd import JumpReLU, Step, TopKEncode, decode_sparse
from .checkpoints import STATE_FILE, TENSORS_FILE, restore_checkpoint, write_checkpoint
from .files import write_sae_files
from .fit import hook_width
from .registry import dictionary_class, trainable_architectures
from .sae import SAE, geometric_median
from .sae_config import SAEConfig
from .training import Clock, TrainingState, initialise, start_training, train_step
from .transcoder import Transcoder

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


class TrainingCancelled(GlasslabError):
    """Ctrl-C (or a callback) stopped training; a checkpoint was written and no SAE was saved."""


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
) -> TrainingRun:
    """Train an SAE on ``config.hook`` of ``model`` and save it (SAELens layout) to the store or ``out``.

    ``documents`` overrides the corpus text (tests); ``on_step(step, metrics)`` is called after each step
    (raise KeyboardInterrupt in it to cancel). An existing checkpoint of the same name and config is
    resumed unless ``fresh``. ``evaluate(sae)`` measures the trained SAE before it is saved (the methods
    layer's held-out evaluation, ``glasslab.methods.features.training.train_sae``); its record is written
    beside the SAE in ``training.json``.
    """
    d_in = hook_width(model, config.hook, config.head_index)
    sae = _untrained_sae(model, config, d_in)
    name = name or default_name(config, d_in)
    if "/" in name or name.startswith("."):
        raise InputError(f"SAE name '{name}' must be a plain name (no '/', not starting with '.')")
    final = Path(out).expanduser() if out else location(SAES, model.key, name)  # a bad name fails here, not after
    target: str | Path = final if out else name
    checkpoints = checkpoints_of(model, name)
    if fresh:
        checkpoints.clear()
    corpus_docs = documents if documents is not None else load_corpus(config.corpus, split="train")
    stream = ActivationStream(
        model, config.hook, corpus_docs, config.seq_len, config.model_batch, config.head_index, config.harvest_tokens
    )
    buffer = ShuffleBuffer(stream, config.buffer_tokens, seed=config.seed + 1)
    optimizer = start_training(sae, config)
    state = TrainingState()
    clock = Clock(state)
    resume_from = _resumable(checkpoints)
    if resume_from is not None:
        restore_checkpoint(resume_from, asdict(config), sae, optimizer, state, buffer)
    else:
        initialise(sae, config, state, buffer)
    _run(config, sae, optimizer, state, buffer, clock, checkpoints, checkpoint_every, on_step)
    sae.finish_training(state.scale)
    evaluation = evaluate(sae) if evaluate is not None else None
    training = _training_record(config, state, buffer, d_in, sae.d_sae, name, command)
    record = {**training, "evaluation": evaluation}
    density = state.fire_counts.double() / max(1, state.step * config.batch_size)
    summary = {"hook": config.hook, "architecture": config.architecture, "d_sae": sae.d_sae, "steps": state.step}
    with save(SAES, model.key, target, summary=summary, name=name) as staging:
        write_sae_files(
            sae,
            staging,
            extra_files={"training.json": (json.dumps(record, indent=2) + "\n").encode()},
            sparsity=torch.log10(density.clamp_min(1e-10)).float(),
        )
    checkpoints.clear()
    return TrainingRun(final, training, evaluation)


def _resumable(checkpoints: Checkpoints) -> Path | None:
    """The newest complete checkpoint, or one written before checkpoints had step folders (its files
    directly in the folder), or None."""
    latest = checkpoints.latest()
    if latest is not None:
        return latest[1]
    return checkpoints.folder if (checkpoints.folder / STATE_FILE).is_file() else None


def _save_checkpoint(checkpoints: Checkpoints, settings: dict[str, Any], sae: SAE, optimizer, state, buffer) -> None:
    """A new ``step-<N>`` checkpoint; an older-layout one beside it goes once the new one is complete."""
    with checkpoints.save(state.step) as staging:
        write_checkpoint(staging, settings, sae, optimizer, state, buffer)
    for legacy in (TENSORS_FILE, STATE_FILE):
        (checkpoints.folder / legacy).unlink(missing_ok=True)


def _untrained_sae(model: Model, config: TrainConfig, d_in: int) -> SAE:
    """The SAE to train, with the config it will be saved with (its architecture checks the settings)."""
    kind = dictionary_class(config.architecture)
    cfg = SAEConfig(
        architecture=config.architecture,
        d_in=d_in,
        d_sae=config.width(d_in),
        hook=config.hook,
        model_name=model.name,
        k=config.k if kind.uses_k else None,
        hook_head_index=config.head_index,
        context_size=config.seq_len,
        prepend_bos=True,
        dataset_path=config.corpus,
    )
    kind.check_training(cfg)
    return SAE(cfg)


def _run(
    config: TrainConfig,
    sae: SAE,
    optimizer: torch.optim.Optimizer,
    state: TrainingState,
    buffer: ShuffleBuffer,
    clock: Clock,
    checkpoints: Checkpoints,
    checkpoint_every: int,
    on_step: Callable[[int, dict[str, float]], None] | None,
) -> None:
    """Steps until ``config.steps``, with a progress bar and checkpoints; Ctrl-C checkpoints and cancels."""
    settings = asdict(config)
    bar = tqdm(
        total=config.steps,
        initial=state.step,
        desc=f"training SAE on {config.hook}",
        unit="step",
        disable=not progress_enabled(),
        file=sys.stderr,
    )
    last_saved = state.step
    try:
        while state.step < config.steps:
            metrics = train_step(sae, optimizer, config, state, buffer)
            bar.update(1)
            if state.step % 5 == 0 or state.step == config.steps:
                bar.set_postfix(
                    loss=f"{metrics['loss']:.3g}",
                    fve=f"{metrics['fve']:.3f}",
                    l0=f"{metrics['l0']:.1f}",
                    dead=f"{metrics['dead']:.1%}",
                    read=buffer.read,
                )
            if on_step is not None:
                on_step(state.step, metrics)
            if checkpoint_every and state.step % checkpoint_every == 0 and state.step < config.steps:
                clock.lap()
                _save_checkpoint(checkpoints, settings, sae, optimizer, state, buffer)
                last_saved = state.step
    except KeyboardInterrupt:
        bar.close()
        clock.lap()
        if state.step > last_saved:
            _save_checkpoint(checkpoints, settings, sae, optimizer, state, buffer)
        raise TrainingCancelled(
            f"training stopped at step {state.step}/{config.steps}; checkpoint kept in '{checkpoints.folder}': "
            "run the same command again to resume (no SAE was saved)"
        ) from None
    bar.close()
    clock.lap()


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
    config: TrainConfig,
    state: TrainingState,
    buffer: ShuffleBuffer,
    d_in: int,
    d_sae: int,
    name: str,
    command: str | None,
) -> dict[str, Any]:
    density = state.fire_counts.double() / max(1, state.step * config.batch_size)
    return {
        "name": name,
        "command": command,
        "config": asdict(config),
        "d_in": d_in,
        "d_sae": d_sae,
        "steps": state.step,
        "tokens_trained": state.step * config.batch_size,
        "tokens_harvested": buffer.read,
        "epochs_over_pool": buffer.epochs,
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
