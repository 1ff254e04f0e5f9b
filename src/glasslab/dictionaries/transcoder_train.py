"""Train a transcoder for every layer of a model from one harvest: each forward pass caches every layer's
MLP input (``blocks.L.mlp.in``) and output (``blocks.L.mlp_out``), and every layer's transcoder takes a
step on the same shuffled batch of tokens.

The optimisation is the trainer's (``training.py``) for each layer, unchanged: rows are (input, target)
pairs, each scaled to mean squared norm equal to its width, folded into the weights at the end
(``Transcoder.finish_training``). One shuffle buffer holds all layers' pairs side by side (BOS left out,
as for SAEs: see ``activations.py``; the rows are ``transcoder_rows.py``'s), so the model runs once per batch
of sequences whatever the number of layers; its memory is ``buffer_tokens x layers x 2 x d_model`` floats.
Checkpoints (every layer's parameters, Adam moments and counters, and the buffer's position) go through the
store's ``Checkpoints`` and resume exactly; the set is written once, atomically, at the end.

``cluster=`` runs the same loop data-parallel on Ray Train workers (``parallel.py``), as SAE training does:
every rank reads the same harvest, draws the same batch and steps every layer on its slice of it, the ranks
averaging each layer's gradient; rank 0 writes the checkpoints and the set is saved here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError
from ..model.model import Model
from ..progress import progress
from ..store import TRANSCODER_CHECKPOINTS, TRANSCODERS, Checkpoints, location
from .activations import ShuffleBuffer
from .checkpoints import restore_checkpoint, write_checkpoint
from .parallel import ConfiguredTraining
from .registry import dictionary_class, trainable_architectures
from .sae_config import SAEConfig
from .train import TrainConfig, TrainingCancelled
from .training import ALONE, Clock, Peers, TrainingState, initialise, start_training, train_step
from .transcoder import Transcoder
from .transcoder_rows import HarvestedPairs, LayerRows, RestoredAlready, TranscodersStream, pair_stream
from .transcoder_set import TranscoderSet, layer_folder

if TYPE_CHECKING:
    from ..cluster import ClusterSpec

__all__ = ["TranscoderTrainConfig", "TranscoderTrainingRun", "TranscodersStream", "train_transcoders"]

StepCallback = Callable[[int, dict[int, dict[str, float]]], None]


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
class _Layer:
    """One layer's training: its transcoder, optimiser, trainer state and rows."""

    layer: int
    transcoder: Transcoder
    optimizer: torch.optim.Optimizer
    state: TrainingState
    rows: LayerRows
    plan: TranscoderTrainConfig


@dataclass
class TrainedLayers:
    """What the loop leaves for saving: each layer's transcoder still in training units and its state."""

    transcoders: dict[int, Transcoder]
    states: dict[int, TrainingState]
    harvested: int  # rows read from the model
    epochs: int  # reuses of the whole pool
    workers: int = 1  # data-parallel ranks


@dataclass(frozen=True)
class TranscoderTrainingRun:
    """A finished training: where the set was saved, the record written beside it and its evaluation."""

    path: Path
    training: dict[str, Any]
    evaluation: dict[str, Any] | None


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
    on_step: StepCallback | None = None,
    command: str | None = None,
    cluster: str | ClusterSpec | None = None,
    workers: int | None = None,
    worker_gpus: float = 0.0,
) -> TranscoderTrainingRun:
    """Train ``config.architecture`` transcoders for ``config``'s layers of ``model`` from one harvest and
    save them as a ``TranscoderSet`` (store name ``name`` or folder ``out``).

    ``on_step(step, metrics by layer)`` runs after every step (raise KeyboardInterrupt in it to cancel: a
    checkpoint is written and ``TrainingCancelled`` raised); a checkpoint of the same name and settings is
    resumed unless ``fresh``. ``evaluate(transcoders)`` measures the trained set before it is saved.

    ``cluster`` (``local``, ``auto`` or an address; None: this process) trains data-parallel on ``workers``
    Ray Train workers with ``worker_gpus`` each, from the harvest ``config.activations`` (each rank running the
    model over the corpus would repeat every layer's forward passes), so ``config.batch_size`` must divide
    among them; ``on_step`` then runs on every worker (it must be picklable).
    """
    spec = training_cluster(cluster, workers, worker_gpus, config)
    layers = config.layers_of(model)
    name = name or default_set_name(config, model)
    target: str | Path = Path(out).expanduser() if out else name
    location(TRANSCODERS, model.key, None if out else name)  # a bad name fails now, not after training
    checkpoints = transcoder_checkpoints(model, name)
    if fresh:
        checkpoints.clear()
    if spec is not None:
        from .parallel import run_on_cluster, with_absolute_paths  # Ray only for a cluster

        job = _SetOnCluster(with_absolute_paths(config), layers, name, checkpoint_every)
        trained: TrainedLayers = run_on_cluster(spec, model, job, on_step)
    else:
        trained = run_transcoder_training(model, config, layers, checkpoints, documents, checkpoint_every, on_step)
    for layer, transcoder in trained.transcoders.items():
        transcoder.finish_training(trained.states[layer].scale, trained.states[layer].target_scale)
    transcoders = TranscoderSet(trained.transcoders, n_layers=model.n_layers, model_name=model.name)
    evaluation = evaluate(transcoders) if evaluate is not None else None
    training = _record(config, trained, name, command)
    if spec is not None:
        training["workers"] = trained.workers
    record = (json.dumps({**training, "evaluation": evaluation}, indent=2) + "\n").encode()
    path = transcoders.save(target, model.key, extra_files={"training.json": record})
    checkpoints.clear()
    return TranscoderTrainingRun(path, training, evaluation)


def training_cluster(
    cluster: str | ClusterSpec | None, workers: int | None, worker_gpus: float, config: TranscoderTrainConfig
) -> ClusterSpec | None:
    """The cluster to train on, or None for this process (Ray is not even imported then); a
    one-line error for options that cannot go together (checked before anything runs)."""
    if cluster is None:
        from ..cluster.connect import check_cluster_options

        check_cluster_options(cluster, workers, worker_gpus)  # workers without a cluster: a one-line error
        return None
    if config.activations is None:
        raise InputError(
            "training transcoders on a cluster reads a harvest: give --activations (glasslab harvest "
            "'blocks.*.mlp.in,blocks.*.mlp_out' --out DIR writes one)"
        )
    from ..cluster import cluster_spec

    spec = cluster_spec(cluster, workers, worker_gpus)
    return spec if spec.distributed else None


def transcoder_checkpoints(model: Model, name: str) -> Checkpoints:
    """The set's training checkpoints (``step-<N>/`` folders, one sub-folder per layer, the newest kept)."""
    return Checkpoints(location(TRANSCODER_CHECKPOINTS, model.key, name), TRANSCODER_CHECKPOINTS, model.key)


def run_transcoder_training(
    model: Model,
    config: TranscoderTrainConfig,
    layers: tuple[int, ...],
    checkpoints: Checkpoints,
    documents: Iterable[str] | None,
    checkpoint_every: int,
    on_step: StepCallback | None,
    peers: Peers = ALONE,
    *,
    show_progress: bool = True,
) -> TrainedLayers:
    """The training loop, in this process or on one data-parallel rank (``peers``): from the newest
    checkpoint in ``checkpoints`` if any (rank 0's choice), else from scratch."""
    stream = pair_stream(model, config, layers, documents)
    buffer = ShuffleBuffer(stream, config.buffer_tokens, seed=config.seed + 1)
    runs = [_start_layer(model, config, layer, index, buffer, stream) for index, layer in enumerate(layers)]
    clock = Clock(runs[0].state)
    latest = checkpoints.latest()
    resume_from = peers.agree(None if latest is None else latest[1])
    for index, run in enumerate(runs):
        if resume_from is not None:
            rows = buffer if index == 0 else RestoredAlready(buffer)
            folder = resume_from / layer_folder(run.layer)
            restore_checkpoint(folder, _settings(config), run.transcoder, run.optimizer, run.state, rows)
        else:
            initialise(run.transcoder, run.plan, run.state, run.rows)
        peers.replicate(run.transcoder, run.optimizer)
    _loop(config, runs, buffer, clock, checkpoints, checkpoint_every, on_step, peers, show_progress)
    return TrainedLayers(
        {run.layer: run.transcoder for run in runs},
        {run.layer: run.state for run in runs},
        buffer.read,
        buffer.epochs,
        peers.world,
    )


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
    stream: TranscodersStream | HarvestedPairs,
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
    return _Layer(layer, transcoder, optimizer, TrainingState(), LayerRows(buffer, stream, index), plan)


def _loop(
    config: TranscoderTrainConfig,
    runs: list[_Layer],
    buffer: ShuffleBuffer,
    clock: Clock,
    checkpoints: Checkpoints,
    checkpoint_every: int,
    on_step: StepCallback | None,
    peers: Peers,
    show_progress: bool,
) -> None:
    """Steps until ``config.steps``: one shared batch, one step per layer (rank 0 alone writes checkpoints);
    Ctrl-C checkpoints and cancels."""
    step = runs[0].state.step
    last_saved = step
    writes = peers.rank == 0
    steps: Iterable[int] = range(step, config.steps)
    if show_progress:
        steps = progress(steps, total=config.steps - step, description="training transcoders", unit="step")
    try:
        for _ in steps:
            shared = buffer.next_batch(config.batch_size)
            metrics = {}
            for run in runs:
                run.rows.current = shared
                metrics[run.layer] = train_step(run.transcoder, run.optimizer, run.plan, run.state, run.rows, peers)
            step = runs[0].state.step
            if on_step is not None:
                on_step(step, metrics)
            if writes and checkpoint_every and step % checkpoint_every == 0 and step < config.steps:
                clock.lap()
                _save_checkpoint(checkpoints, config, runs, buffer)
                last_saved = step
    except KeyboardInterrupt:
        clock.lap()
        if writes and runs[0].state.step > last_saved:
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


def _record(config: TranscoderTrainConfig, trained: TrainedLayers, name: str, command: str | None) -> dict[str, Any]:
    """training.json: settings, sizes, time and each layer's final training metrics and dead fraction."""
    first = next(iter(trained.states.values()))
    return {
        "name": name,
        "command": command,
        "config": _settings(config),
        "layers": list(trained.transcoders),
        "d_sae": next(iter(trained.transcoders.values())).d_sae,
        "steps": first.step,
        "tokens_trained": first.step * config.batch_size,
        "tokens_harvested": trained.harvested,
        "epochs_over_pool": trained.epochs,
        "seconds": round(first.seconds, 1),
        "cpu_seconds": round(first.cpu_seconds, 1),
        "per_layer": {
            str(layer): {
                "input_scale": state.scale,
                "target_scale": state.target_scale,
                "final": state.history[-1] if state.history else None,
                "dead_fraction_training": float((state.since_fired >= config.dead_after_tokens).float().mean()),
            }
            for layer, state in trained.states.items()
        },
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


@dataclass(frozen=True)
class _SetOnCluster(ConfiguredTraining):
    """A transcoder set's training as ``parallel.run_on_cluster`` runs it on every rank (picklable)."""

    config: TranscoderTrainConfig
    layers: tuple[int, ...]
    name: str
    checkpoint_every: int
    what: str = "transcoder training"
    product: str = "transcoder set"

    def storage(self, model: Model) -> Path:
        return transcoder_checkpoints(model, self.name).folder / "ray-train"

    def run(self, model: Model, peers: Peers, on_step: StepCallback) -> TrainedLayers:
        checkpoints = transcoder_checkpoints(model, self.name)
        every = self.checkpoint_every
        trained = run_transcoder_training(
            model, self.config, self.layers, checkpoints, None, every, on_step, peers, show_progress=False
        )
        for transcoder in trained.transcoders.values():
            transcoder.cpu()  # for the driver, which may have no GPU
        return trained

    def headline(self, metrics: dict[int, dict[str, float]]) -> dict[str, float]:
        return layer_means(metrics)


def layer_means(metrics: dict[int, dict[str, float]]) -> dict[str, float]:
    """A step's loss, fve, l0 and dead averaged over the layers (those every layer reports): one line of
    progress for the whole set, on the command line's bar and the workbench's job alike."""
    keys = [key for key in ("loss", "fve", "l0", "dead") if all(key in layer for layer in metrics.values())]
    return {key: sum(layer[key] for layer in metrics.values()) / len(metrics) for key in keys}
