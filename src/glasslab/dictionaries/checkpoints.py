"""Training checkpoints: the dictionary's parameters, Adam's moments, the feature counters and the rows'
position, written atomically, so a resumed training gives the same result as an uninterrupted one.

Tensors are named after the dictionary's own parameters (``param.W_enc``, ``adam.W_enc.exp_avg``; a
JumpReLU SAE in training has ``log_threshold``), the names checkpoints had before dictionaries were a
layer of their own, so those resume too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import InputError
from .base import Dictionary
from .training import TrainingState

TENSORS_FILE = "state.safetensors"
STATE_FILE = "state.json"


class ResumableRows(Protocol):
    """Rows whose position can be saved and restored (``glasslab.dictionaries.activations.ShuffleBuffer``)."""

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...


def write_checkpoint(
    into: Path,
    settings: dict[str, Any],
    dictionary: Dictionary,
    optimizer: torch.optim.Optimizer,
    state: TrainingState,
    rows: ResumableRows,
) -> None:
    """Write everything a resumed training needs into the folder ``into`` (a staging folder: the caller
    makes the write atomic); ``settings`` (JSON) must match for it to resume."""
    pool = rows.state()
    tensors = {f"param.{n}": p.detach().clone() for n, p in dictionary.named_parameters()}
    adam_steps = {}
    for n, p in dictionary.named_parameters():
        moments = optimizer.state.get(p, {})
        if moments:
            tensors[f"adam.{n}.exp_avg"] = moments["exp_avg"]
            tensors[f"adam.{n}.exp_avg_sq"] = moments["exp_avg_sq"]
            adam_steps[n] = float(moments["step"])
    tensors["since_fired"] = state.since_fired
    tensors["fire_counts"] = state.fire_counts
    tensors["buffer.order"] = pool.pop("order")
    tensors["buffer.generator"] = pool.pop("generator")
    record = {
        "config": settings,
        "step": state.step,
        "scale": state.scale,
        "target_scale": state.target_scale,
        "seconds": state.seconds,
        "cpu_seconds": state.cpu_seconds,
        "history": state.history,
        "adam_steps": adam_steps,
        "buffer": pool,
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, into / TENSORS_FILE)
    (into / STATE_FILE).write_text(json.dumps(record) + "\n", encoding="utf-8")


def restore_checkpoint(
    folder: Path,
    settings: dict[str, Any],
    dictionary: Dictionary,
    optimizer: torch.optim.Optimizer,
    state: TrainingState,
    rows: ResumableRows,
) -> None:
    """Load ``folder`` into a dictionary that has started training; one-line errors for an unreadable
    checkpoint or one written with other ``settings``."""
    try:
        record = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        tensors = load_file(folder / TENSORS_FILE)
    except (OSError, json.JSONDecodeError, SafetensorError) as exc:
        raise InputError(
            f"the checkpoint in '{folder}' is unreadable ({exc.__class__.__name__}); "
            "delete it or pass fresh=True (--fresh)"
        ) from None
    if record.get("config") != json.loads(json.dumps(settings)):
        raise InputError(
            f"a checkpoint with other settings exists in '{folder}'; pass fresh=True (--fresh) to discard it, "
            "or another name"
        )
    with torch.no_grad():
        for n, p in dictionary.named_parameters():
            p.copy_(tensors[f"param.{n}"])
    for n, p in dictionary.named_parameters():
        if n in record["adam_steps"]:
            optimizer.state[p] = {
                "step": torch.tensor(record["adam_steps"][n]),
                "exp_avg": tensors[f"adam.{n}.exp_avg"].clone(),
                "exp_avg_sq": tensors[f"adam.{n}.exp_avg_sq"].clone(),
            }
    state.step, state.scale = int(record["step"]), float(record["scale"])
    state.target_scale = record.get("target_scale")  # checkpoints of autoencoders may predate it
    state.seconds, state.cpu_seconds = float(record["seconds"]), float(record["cpu_seconds"])
    state.history = list(record["history"])
    state.since_fired, state.fire_counts = tensors["since_fired"].clone(), tensors["fire_counts"].clone()
    rows.restore({**record["buffer"], "order": tensors["buffer.order"], "generator": tensors["buffer.generator"]})
