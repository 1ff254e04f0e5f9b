"""Train a transcoder for every layer of a model from one harvest: each forward pass caches every layer's
MLP input (``blocks.L.mlp.in``) and output (``blocks.L.mlp_out``), and every layer's transcoder takes a
step on the same shuffled batch of tokens.

The optimisation is the trainer's (``training.py``) for each layer, unchanged: rows are (input, target)
pairs, each scaled to mean squared norm equal to its width, folded into the weights at the end
(``Transcoder.finish_training``). One shuffle buffer holds all layers' pairs side by side (BOS left out,
as for SAEs: see ``activations.py``), so the model runs once per batch of sequences whatever the number
of layers; its memory is ``buffer_tokens x layers x 2 x d_model`` floats. Checkpoints (every layer's
parameters, Adam moments and counters, and the buffer's position) go through the store's
``Checkpoints`` and resume exactly; the set is written once, atomically, at the end.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..activations import HarvestedRows
from ..data import load_corpus
from ..errors import InputError
from ..model.model import Model
from ..progress import progress
from ..store import TRANSCODER_CHECKPOINTS, TRANSCODERS, Checkpoints, location
from .activations import ActivationStream, ShuffleBuffer, harvested_rows, skips_bos
from .checkpoints import restore_checkpoint, write_checkpoint
from .registry import dictionary_class, trainable_architectures
from .sae_config import SAEConfig
from .train import TrainConfig, TrainingCancelled
from .training import Batch, Clock, TrainingState, initialise, start_training, train_step
from .transcoder import Transcoder
from .transcoder_set import TranscoderSet, layer_folder

__all__ = ["TranscoderTrainConfig", "TranscoderTrainingRun", "TranscodersStream", "train_transcoders"]


def trainable_transcoders() -> tuple[str, ...]:
    return tuple(name for name in trainable_architectures() if issubclass(dictionary_class(name), Transcoder))


@dataclass(frozen=True)
class TranscoderTrainConfig(TrainConfig):
    """``TrainConfig``'s settings, per layer, for a set of transcoders ``blocks.L.mlp.in -> blocks.L.mlp_out``
    (``layers``: None for every layer). ``hook`` only names the inputs; ``buffer_tokens`` rows hold every
    layer's pair, so its default is smaller than an SAE's."""

    hook: str = "blocks.*.mlp.in"
    architecture: str = "topk_transcoder"
    expansion: int = 4
    tokens: int = 1_048_576
    buffer_tokens: int = 8192
    batch_size: int = 2048
    layers: tuple[int, ...] | None = None

    def check_architecture(self) -> None:
        trainable = trainable_transcoders()
        if self.architecture not in trainable:
            raise InputError(f"glasslab trains {', '.join(trainable)} transcoders, not '{self.architecture}'")

    def layers_of(self, model: Model) -> tuple[int, ...]:
        """The layers to train, checked against ``model``."""
        layers = tuple(range(model.n_layers)) if self.layers is None else tuple(self.layers)
        bad = [layer for layer in layers if not (isinstance(layer, int) and 0 <= layer < model.n_layers)]
        if bad or not layers or len(set(layers)) != len(layers):
            raise InputError(f"layers must be distinct layers of {model.name} (0..{model.n_layers - 1}), got {layers}")
        return layers


@dataclass
class TranscodersStream(ActivationStream):
    """Rows of every listed layer's (mlp.in, mlp_out) side by side: ``[in_0, out_0, in_1, out_1, ...]``,
    each ``d_model`` wide, from one forward pass per batch of sequences (stopped after the last layer)."""

    layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.hooks = pair_hooks(self.layers)
        self.width = len(self.hooks) * self.model.d_model
        self.stop = max(self.layers) + 1
        self.rows_per_sequence = self.seq_len - (1 if skips_bos(self.model) else 0)
        if self.rows_per_sequence < 1:
            raise InputError(f"seq_len {self.seq_len} leaves no token after BOS; use at least 2")
        self.rows_per_batch = self.rows_per_sequence * self.batch_size

    def _activations(self, batch: torch.Tensor) -> torch.Tensor:
        run = self.model.run(batch, cache=self.hooks, logits=False, stop_at_layer=self.stop)
        act = torch.cat([run.cache[hook] for hook in self.hooks], dim=-1)
        if skips_bos(self.model):
            act = act[:, 1:]
        rows = act.reshape(-1, self.width).float().cpu()
        if not torch.isfinite(rows).all():
            raise InputError("the model produced NaN or infinite MLP activations; load it in float32")
        return rows

    def pair(self, rows: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return layer_pair(rows, index, self.model.d_model)


class HarvestedPairs(HarvestedRows):
    """The same rows as ``TranscodersStream``, read from a harvest of every layer's mlp.in and mlp_out."""

    def pair(self, rows: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return layer_pair(rows, index, self.width // len(self.hooks))


def layer_pair(rows: torch.Tensor, index: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``index``-th listed layer's (input, target) columns of ``[in_0, out_0, in_1, out_1, ...]`` rows."""
    return rows[:, 2 * index * d : (2 * index + 1) * d], rows[:, (2 * index + 1) * d : (2 * index + 2) * d]


def pair_hooks(layers: Iterable[int]) -> list[str]:
    """Each layer's MLP input and output hooks, in the order the rows hold them."""
    return [hook for layer in layers for hook in (f"blocks.{layer}.mlp.in", f"blocks.{layer}.mlp_out")]


class _LayerRows:
    """One layer's view of the shared buffer: ``next_batch`` hands out that layer's columns of the batch
    drawn for this step (every layer trains on the same tokens), ``peek`` those of the buffer's next rows."""

    def __init__(self, buffer: ShuffleBuffer, stream: TranscodersStream, index: int) -> None:
        self.buffer, self.stream, self.index = buffer, stream, index
        self.current: torch.Tensor | None = None

    def peek(self, n: int) -> Batch:
        return self.stream.pair(self.buffer.peek(n), self.index)

    def next_batch(self, n: int) -> Batch:
        if self.current is None:
            raise RuntimeError("the shared batch was not drawn for this step")
        return self.stream.pair(self.current, self.index)


class _RestoredAlready:
    """The buffer for every layer's checkpoint after the first: its state is saved with each, restored once."""

    def __init__(self, buffer: ShuffleBuffer) -> None:
        self.buffer = buffer

    def state(self) -> dict[str, Any]:
        return self.buffer.state()

    def restore(self, state: dict[str, Any]) -> None:
        return None


@dataclass
class _Layer:
    """One layer's training: its transcoder, optimiser, trainer state and rows."""

    layer: int
    transcoder: Transcoder
    optimizer: torch.optim.Optimizer
    state: TrainingState
    rows: _LayerRows
    plan: TranscoderTrainConfig


@dataclass(frozen=True)
class TranscoderTrainingRun:
    """A finished training: where the set was saved, the record written beside it and its evaluation."""

    path: Path
    training: dict[str, Any]
    evaluation: dict[str, Any] | None


def _stream(
    model: Model, config: TranscoderTrainConfig, layers: tuple[int, ...], documents: Iterable[str] | None
) -> TranscodersStream | HarvestedPairs:
    """Every layer's (input, output) rows: from a harvest (``config.activations``) or the model on the corpus."""
    if config.activations is not None:
        return harvested_rows(model, config, pair_hooks(layers), HarvestedPairs)
    docs = documents if documents is not None else load_corpus(config.corpus, split="train")
    return TranscodersStream(
        model, config.hook, docs, config.seq_len, config.model_batch, max_rows=config.harvest_tokens, layers=layers
    )


def train_transcoders(
    model: Model,
    config: TranscoderTrainConfig,
    *,
    name: str | None = None,
    out: str | Path | None = None,
    documents: Iterable[str] | None = None,
    evaluate: Callable[[TranscoderSet], dict[str, Any] | None] | None = None,
    checkpoint_every: int = 50,
    fresh: bool = False,
    on_step: Callable[[int, dict[int, dict[str, float]]], None] | None = None,
    command: str | None = None,
) -> TranscoderTrainingRun:
    """Train ``config.architecture`` transcoders for ``config``'s layers of ``model`` from one harvest and
    save them as a ``TranscoderSet`` (store name ``name`` or folder ``out``).

    ``on_step(step, metrics by layer)`` runs after every step (raise KeyboardInterrupt in it to cancel: a
    checkpoint is written and ``TrainingCancelled`` raised); a checkpoint of the same name and settings is
    resumed unless ``fresh``. ``evaluate(transcoders)`` measures the trained set before it is saved.
    """
    layers = config.layers_of(model)
    name = name or default_set_name(config, model)
    target: str | Path = Path(out).expanduser() if out else name
    location(TRANSCODERS, model.key, None if out else name)  # a bad name fails now, not after training
    checkpoints = Checkpoints(location(TRANSCODER_CHECKPOINTS, model.key, name), TRANSCODER_CHECKPOINTS, model.key)
    if fresh:
        checkpoints.clear()
    stream = _stream(model, config, layers, documents)
    buffer = ShuffleBuffer(stream, config.buffer_tokens, seed=config.seed + 1)
    runs = [_start_layer(model, config, layer, index, buffer, stream) for index, layer in enumerate(layers)]
    clock = Clock(runs[0].state)
    latest = checkpoints.latest()
    if latest is not None:
        for index, run in enumerate(runs):
            rows = buffer if index == 0 else _RestoredAlready(buffer)
            restore_checkpoint(
                latest[1] / layer_folder(run.layer), _settings(config), run.transcoder, run.optimizer, run.state, rows
            )
    else:
        for run in runs:
            initialise(run.transcoder, run.plan, run.state, run.rows)
    _loop(config, runs, buffer, clock, checkpoints, checkpoint_every, on_step)
    for run in runs:
        run.transcoder.finish_training(run.state.scale, run.state.target_scale)
    transcoders = TranscoderSet(
        {run.layer: run.transcoder for run in runs}, n_layers=model.n_layers, model_name=model.name
    )
    evaluation = evaluate(transcoders) if evaluate is not None else None
    training = _record(config, runs, buffer, name, command)
    record = (json.dumps({**training, "evaluation": evaluation}, indent=2) + "\n").encode()
    path = transcoders.save(target, model.key, extra_files={"training.json": record})
    checkpoints.clear()
    return TranscoderTrainingRun(path, training, evaluation)


def default_set_name(config: TranscoderTrainConfig, model: Model) -> str:
    """e.g. ``mlp-topk_transcoder-2560-k32``: kind, width (and k)."""
    k = f"-k{config.k}" if dictionary_class(config.architecture).uses_k else ""
    return f"mlp-{config.architecture}-{config.width(model.d_model)}{k}"


def _settings(config: TranscoderTrainConfig) -> dict[str, Any]:
    return asdict(config)


def _start_layer(
    model: Model,
    config: TranscoderTrainConfig,
    layer: int,
    index: int,
    buffer: ShuffleBuffer,
    stream: TranscodersStream,
) -> _Layer:
    """Layer ``layer``'s untrained transcoder (its seed offset by the layer) and its optimiser."""
    kind = dictionary_class(config.architecture)
    cfg = SAEConfig(
        architecture=config.architecture,
        d_in=model.d_model,
        d_sae=config.width(model.d_model),
        hook=f"blocks.{layer}.mlp.in",
        hook_out=f"blocks.{layer}.mlp_out",
        d_out=model.d_model,
        model_name=model.name,
        k=config.k if kind.uses_k else None,
        apply_b_dec_to_input=False,
        context_size=config.seq_len,
        dataset_path=config.corpus,
    )
    kind.check_training(cfg)
    transcoder = kind(cfg)
    plan = replace(config, hook=cfg.hook, seed=config.seed + layer)
    optimizer = start_training(transcoder, plan)
    return _Layer(layer, transcoder, optimizer, TrainingState(), _LayerRows(buffer, stream, index), plan)  # type: ignore[arg-type]


def _loop(
    config: TranscoderTrainConfig,
    runs: list[_Layer],
    buffer: ShuffleBuffer,
    clock: Clock,
    checkpoints: Checkpoints,
    checkpoint_every: int,
    on_step: Callable[[int, dict[int, dict[str, float]]], None] | None,
) -> None:
    """Steps until ``config.steps``: one shared batch, one step per layer; Ctrl-C checkpoints and cancels."""
    step = runs[0].state.step
    last_saved = step
    try:
        for _ in progress(
            range(step, config.steps), total=config.steps - step, description="training transcoders", unit="step"
        ):
            shared = buffer.next_batch(config.batch_size)
            metrics = {}
            for run in runs:
                run.rows.current = shared
                metrics[run.layer] = train_step(run.transcoder, run.optimizer, run.plan, run.state, run.rows)
            step = runs[0].state.step
            if on_step is not None:
                on_step(step, metrics)
            if checkpoint_every and step % checkpoint_every == 0 and step < config.steps:
                clock.lap()
                _save_checkpoint(checkpoints, config, runs, buffer)
                last_saved = step
    except KeyboardInterrupt:
        clock.lap()
        if runs[0].state.step > last_saved:
            _save_checkpoint(checkpoints, config, runs, buffer)
        raise TrainingCancelled(
            f"training stopped at step {runs[0].state.step}/{config.steps}; checkpoint kept in "
            f"'{checkpoints.folder}': run the same training again to resume (no transcoders were saved)"
        ) from None
    clock.lap()


def _save_checkpoint(
    checkpoints: Checkpoints, config: TranscoderTrainConfig, runs: list[_Layer], buffer: ShuffleBuffer
) -> None:
    with checkpoints.save(runs[0].state.step) as staging:
        for run in runs:
            folder = staging / layer_folder(run.layer)
            folder.mkdir()
            write_checkpoint(folder, _settings(config), run.transcoder, run.optimizer, run.state, buffer)


def _record(
    config: TranscoderTrainConfig, runs: list[_Layer], buffer: ShuffleBuffer, name: str, command: str | None
) -> dict[str, Any]:
    """training.json: settings, sizes, time and each layer's final training metrics and dead fraction."""
    first = runs[0].state
    return {
        "name": name,
        "command": command,
        "config": _settings(config),
        "layers": [run.layer for run in runs],
        "d_sae": runs[0].transcoder.d_sae,
        "steps": first.step,
        "tokens_trained": first.step * config.batch_size,
        "tokens_harvested": buffer.read,
        "epochs_over_pool": buffer.epochs,
        "seconds": round(first.seconds, 1),
        "cpu_seconds": round(first.cpu_seconds, 1),
        "per_layer": {
            str(run.layer): {
                "input_scale": run.state.scale,
                "target_scale": run.state.target_scale,
                "final": run.state.history[-1] if run.state.history else None,
                "dead_fraction_training": float((run.state.since_fired >= config.dead_after_tokens).float().mean()),
            }
            for run in runs
        },
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
