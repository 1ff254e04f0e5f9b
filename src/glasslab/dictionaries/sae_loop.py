"""The SAE training loop: one process's share of a training (``train.py`` prepares and saves it).

Alone it is the whole training; on a cluster (``parallel.py``) every data-parallel rank runs it with its
``Peers``: the same rows, its slice of each batch, and rank 0 alone writing the checkpoints. It resumes from
the newest checkpoint in the store, so a restarted training (Ctrl-C, or a cluster worker that died)
continues where that checkpoint left off.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from ..activations import HarvestedRows
from ..data import load_corpus
from ..errors import GlasslabError
from ..model.model import Model
from ..progress import progress_enabled
from ..store import Checkpoints
from .activations import ActivationStream, ShuffleBuffer, harvested_rows
from .checkpoints import STATE_FILE, TENSORS_FILE, restore_checkpoint, write_checkpoint
from .fit import hook_width
from .registry import dictionary_class
from .sae import SAE
from .sae_config import SAEConfig
from .training import ALONE, Clock, Peers, TrainingState, initialise, start_training, train_step

if TYPE_CHECKING:
    from .train import TrainConfig


class TrainingCancelled(GlasslabError):
    """Ctrl-C (or a callback) stopped training; a checkpoint was written and no SAE was saved."""


@dataclass
class Trained:
    """What the loop leaves for saving: the SAE still in training units, its state and the rows read."""

    sae: SAE
    state: TrainingState
    harvested: int  # rows read from the model
    epochs: int  # reuses of the whole pool
    workers: int = 1  # data-parallel ranks


def run_training(
    model: Model,
    config: TrainConfig,
    checkpoints: Checkpoints,
    documents: Iterable[str] | None,
    checkpoint_every: int,
    on_step: Callable[[int, dict[str, float]], None] | None,
    peers: Peers = ALONE,
    *,
    progress: bool = True,
) -> Trained:
    """The training loop, in this process or on one data-parallel rank (``peers``): from the newest
    checkpoint in ``checkpoints`` if any (rank 0's choice), else from scratch."""
    d_in = hook_width(model, config.hook, config.head_index)
    sae = SAE(sae_config(model, config, d_in))
    buffer = ShuffleBuffer(_rows(model, config, documents), config.buffer_tokens, seed=config.seed + 1)
    optimizer = start_training(sae, config)
    state = TrainingState()
    clock = Clock(state)
    resume_from = peers.agree(_resumable(checkpoints))
    if resume_from is not None:
        restore_checkpoint(resume_from, asdict(config), sae, optimizer, state, buffer)
    else:
        initialise(sae, config, state, buffer)
    peers.replicate(sae, optimizer)
    _run(config, sae, optimizer, state, buffer, clock, checkpoints, checkpoint_every, on_step, peers, progress)
    return Trained(sae, state, buffer.read, buffer.epochs, peers.world)


def _rows(model: Model, config: TrainConfig, documents: Iterable[str] | None) -> ActivationStream | HarvestedRows:
    """Where the rows come from: a harvest (``config.activations``) or the model run on the corpus."""
    if config.activations is not None:
        return harvested_rows(model, config, [config.hook])
    corpus_docs = documents if documents is not None else load_corpus(config.corpus, split="train")
    return ActivationStream(
        model, config.hook, corpus_docs, config.seq_len, config.model_batch, config.head_index, config.harvest_tokens
    )


def _resumable(checkpoints: Checkpoints) -> Path | None:
    """The newest complete checkpoint, or one written before checkpoints had step folders (its files
    directly in the folder), or None."""
    latest = checkpoints.latest()
    if latest is not None:
        return latest[1]
    return checkpoints.folder if (checkpoints.folder / STATE_FILE).is_file() else None


def _save_checkpoint(
    checkpoints: Checkpoints,
    settings: dict[str, Any],
    sae: SAE,
    optimizer: torch.optim.Optimizer,
    state: TrainingState,
    buffer: ShuffleBuffer,
) -> None:
    """A new ``step-<N>`` checkpoint; an older-layout one beside it goes once the new one is complete."""
    with checkpoints.save(state.step) as staging:
        write_checkpoint(staging, settings, sae, optimizer, state, buffer)
    for legacy in (TENSORS_FILE, STATE_FILE):
        (checkpoints.folder / legacy).unlink(missing_ok=True)


def sae_config(model: Model, config: TrainConfig, d_in: int) -> SAEConfig:
    """The config the SAE will be saved with, checked by its architecture (a refusal fails before any work)."""
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
    return cfg


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
    peers: Peers,
    progress: bool,
) -> None:
    """Steps until ``config.steps``, with a progress bar and checkpoints (rank 0 alone writes them); Ctrl-C
    checkpoints and cancels."""
    settings = asdict(config)
    writes = peers.rank == 0
    bar = tqdm(
        total=config.steps,
        initial=state.step,
        desc=f"training SAE on {config.hook}",
        unit="step",
        disable=not (progress and progress_enabled()),
        file=sys.stderr,
    )
    last_saved = state.step
    try:
        while state.step < config.steps:
            metrics = train_step(sae, optimizer, config, state, buffer, peers)
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
            if writes and checkpoint_every and state.step % checkpoint_every == 0 and state.step < config.steps:
                clock.lap()
                _save_checkpoint(checkpoints, settings, sae, optimizer, state, buffer)
                last_saved = state.step
    except KeyboardInterrupt:
        bar.close()
        clock.lap()
        if writes and state.step > last_saved:
            _save_checkpoint(checkpoints, settings, sae, optimizer, state, buffer)
        raise TrainingCancelled(
            f"training stopped at step {state.step}/{config.steps}; checkpoint kept in '{checkpoints.folder}': "
            "run the same command again to resume (no SAE was saved)"
        ) from None
    bar.close()
    clock.lap()
