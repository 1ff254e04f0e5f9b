"""Models that accelerate spreads or offloads (``glasslab.load(device_map=...)``).

accelerate wraps a module's ``forward`` with hooks that move its inputs to the module's execution device
and, for an offloaded module (CPU offload beside a GPU, or disk offload), load its weights only while
it runs: outside its forward the module holds weights on the ``meta`` device (shape and dtype, no data).
glasslab's own hooks are PyTorch forward hooks, which run outside that wrapper, so they coexist; what
needs care is reading a weight directly (``model.weights``, norms) and choosing the device of the
inputs. These helpers answer both without changing anything for a model loaded normally.
"""

from __future__ import annotations

import os

import torch

from ..errors import InputError


def _align_hooks(module: torch.nn.Module) -> list:
    """accelerate's device-aligning hooks on ``module`` (several when chained in a SequentialHook)."""
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return []
    return [h for h in getattr(hook, "hooks", (hook,)) if hasattr(h, "execution_device")]


def execution_device(module: torch.nn.Module) -> torch.device | None:
    """Where accelerate runs ``module`` (None for a module it does not manage)."""
    for hook in _align_hooks(module):
        if hook.execution_device is not None:
            device = hook.execution_device
            return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
    return None


def is_offloaded(tensor: torch.Tensor | None) -> bool:
    """True for a weight accelerate keeps off its module (on the CPU or disk) until the module runs."""
    return tensor is not None and tensor.device.type == "meta"


def onloaded(module: torch.nn.Module, kind: str, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` (``module``'s ``kind``, e.g. "weight"), or for an offloaded one a copy of its value on the
    module's execution device, read from accelerate's map of offloaded weights (disk or CPU)."""
    if not is_offloaded(tensor):
        return tensor
    for hook in _align_hooks(module):
        weights = getattr(hook, "weights_map", None)
        if getattr(hook, "offload", False) and weights is not None:
            try:
                value = weights[kind]
            except KeyError:
                continue
            return value.to(device=execution_device(module) or value.device, dtype=tensor.dtype)
    raise InputError(
        f"a {type(module).__name__}'s {kind} is offloaded where glasslab cannot read it; load the model with "
        "a device_map that keeps this module in memory"
    )


def parameter_count(hf_model: torch.nn.Module) -> int:
    """The model's parameters, a tied weight counted once: after a pass, accelerate puts an offloaded model's
    tied weights back on ``meta`` as separate tensors, so ``parameters()`` alone would count them twice."""
    parameters = dict(hf_model.named_parameters())
    tied = getattr(hf_model, "all_tied_weights_keys", None) or {}
    return sum(p.numel() for name, p in parameters.items() if not (name in tied and tied[name] in parameters))


# -- load options --------------------------------------------------------------------------------------
_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def placement(
    device_map: str | dict | None,
    max_memory: dict | None,
    offload_folder: str | os.PathLike | None,
    offload_buffers: bool,
) -> dict:
    """``from_pretrained``'s keyword arguments for these ``glasslab.load`` options (none without a device_map),
    each checked first so that a bad value is a one-line error rather than a traceback from accelerate."""
    if device_map is None:
        given = [name for name, value in (("max_memory", max_memory), ("offload_folder", offload_folder)) if value]
        if given or offload_buffers:
            raise InputError(
                f"{', '.join(given) or 'offload_buffers'} needs a device_map; pass device_map='auto' (or a dict)"
            )
        return {}
    if isinstance(device_map, str):
        if device_map not in _STRATEGIES:
            raise InputError(f"unknown device_map '{device_map}'; use {', '.join(_STRATEGIES)} or a dict")
    elif isinstance(device_map, dict):
        if max_memory:
            raise InputError("max_memory applies to device_map='auto'; a dict device_map already places each module")
        device_map = {
            str(name): _checked_device(device, f"device_map['{name}']") for name, device in device_map.items()
        }
    else:
        raise InputError(f"device_map must be 'auto' or a dict of module name to device, not {device_map!r}")
    options: dict = {"device_map": device_map, "offload_buffers": bool(offload_buffers)}
    if max_memory:
        options["max_memory"] = {
            _checked_device(key, "max_memory"): _memory_size(key, size) for key, size in dict(max_memory).items()
        }
    if offload_folder is not None:
        options["offload_folder"] = str(offload_folder)
    return options


def parse_max_memory(text: str, flag: str = "--max-memory") -> dict[int | str, int | str]:
    """A command line's memory budget as ``max_memory``: "cpu=8GiB,0=20GiB" (DEVICE=SIZE, a GPU by its index),
    or one size alone for the CPU ("8GiB"); sizes as text with a unit or a number of bytes."""
    parts = [part.strip() for part in text.split(",")]
    usage = f"{flag} takes DEVICE=SIZE pairs such as cpu=8GiB,0=20GiB (or one size for the CPU, e.g. 8GiB)"
    if not all(parts):
        raise InputError(f"{usage}; got '{text}'")
    budget: dict[int | str, int | str] = {}
    for part in parts:
        device, equals, size = part.rpartition("=")
        if not equals and len(parts) == 1:
            device = "cpu"
        elif not (equals and device.strip() and size.strip()):
            raise InputError(f"{usage}; got '{part}'")
        device, size = device.strip().lower(), size.strip()
        key = _checked_device(int(device) if device.isdigit() else device, flag)
        if key in budget:
            raise InputError(f"{flag} gives {device} twice")
        budget[key] = _memory_size(f"{flag} {device}", int(size) if size.isdigit() else size)
    return budget


def _checked_device(device: object, where: str) -> int | str:
    """A device as accelerate takes it: a GPU index, "cpu", "disk", "mps" or "cuda:N" (as its index)."""
    if isinstance(device, torch.device):
        device = str(device)
    if isinstance(device, str) and device.startswith("cuda"):
        index = device.removeprefix("cuda").removeprefix(":")
        if index and not index.isdigit():
            raise InputError(f"{where}: unknown device '{device}'; use a GPU index, cuda:N, cpu, disk or mps")
        device = int(index or 0)
    if isinstance(device, int) and not isinstance(device, bool):
        count = torch.cuda.device_count()
        if not 0 <= device < count:
            raise InputError(f"{where}: GPU {device} is not on this machine ({count} GPUs); use cpu or disk")
        return device
    if device in ("cpu", "disk"):
        return device
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"{where}: mps is not available on this machine; use cpu or disk")
        return device
    raise InputError(f"{where}: unknown device {device!r}; use a GPU index, cuda:N, cpu, disk or mps")


def _memory_size(key: object, size: object) -> int | str:
    """A size in bytes or as text ("2GiB", "500MB"), checked the way accelerate will read it."""
    from accelerate.utils import convert_file_size_to_int  # imported only when a placement is asked for

    try:
        if isinstance(size, bool) or convert_file_size_to_int(size) <= 0:
            raise ValueError
    except (ValueError, TypeError):
        where = key if isinstance(key, str) and key.startswith("--") else f"max_memory[{key!r}]"
        raise InputError(f"{where} must be a size such as '2GiB' or a number of bytes, not {size!r}") from None
    return size


def check_device_map(hf_model: torch.nn.Module, device_map: dict) -> None:
    """Refuse a dict device_map naming a module the model lacks or leaving a weight unplaced: transformers would
    quietly put such weights on the CPU (beside a GPU, a slow surprise)."""
    for name in device_map:
        try:
            hf_model.get_submodule(name)
        except AttributeError:
            raise InputError(
                f"device_map names '{name}', which is not a module of this model; use names such as "
                "'model.layers.0' (model.hf.named_modules() lists them)"
            ) from None
    prefixes = tuple(f"{name}." for name in device_map if name)
    if "" in device_map:
        return
    unplaced = [
        name for name, _ in hf_model.named_parameters() if name not in device_map and not name.startswith(prefixes)
    ]
    if unplaced:
        more = f" and {len(unplaced) - 1} more" if len(unplaced) > 1 else ""
        raise InputError(f"device_map places no device for {unplaced[0]}{more}; give every module a device")
