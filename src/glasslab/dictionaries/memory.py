"""Will an SAE's parameters fit? Checked before anything is allocated, so an absurd ``cfg.json`` (a
``d_sae`` of 10^12) is one line saying so instead of an allocator traceback, or a machine swapping to death.

Free memory comes from the device itself: ``torch.cuda.mem_get_info`` on a GPU, ``MemAvailable`` in
``/proc/meminfo`` (else ``os.sysconf``) on the CPU; where neither can tell (MPS, other systems) the check
is skipped rather than guessed.
"""

from __future__ import annotations

import math
import os

import torch

from ..errors import InputError


def check_memory(shapes: dict[str, tuple[int, ...]], dtype: torch.dtype, device: str | torch.device, what: str) -> None:
    """One-line error if tensors of these ``shapes`` and ``dtype`` cannot fit in ``device``'s free memory."""
    need = sum(math.prod(shape) for shape in shapes.values()) * dtype.itemsize
    free = available_bytes(device)
    if free is not None and need > free:
        raise InputError(
            f"{what} needs {_size(need)} for its {str(dtype).removeprefix('torch.')} parameters but {device} has "
            f"{_size(free)} free; check the widths in its cfg.json, or load it in a smaller dtype or elsewhere"
        )


def available_bytes(device: str | torch.device) -> int | None:
    """Bytes free for new tensors on ``device``, or None when the system does not say."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError, ValueError):  # no driver, or a device index that does not exist
            return None
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(n_bytes: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:,.1f} {unit}"
    return f"{n_bytes:,} bytes"
