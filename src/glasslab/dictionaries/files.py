"""SAEs on disk in SAELens's layout: a folder with ``cfg.json`` and ``sae_weights.safetensors``.

Reading validates every tensor's name, shape and finiteness before the SAE is used, so a truncated or
mismatched file fails with one line instead of a shape error deep inside a forward pass. Writing goes
through the store's ``save`` (a temporary folder renamed into place, with a manifest), so an interrupted save
never leaves a half-written SAE.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..errors import InputError
from ..store import SAES, save
from .base import Dictionary
from .memory import check_memory
from .registry import dictionary_class
from .sae import SAE
from .sae_config import SAEConfig

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SPARSITY_FILE = "sparsity.safetensors"  # optional: log10 feature density, as SAELens writes it


def sparsity_density(log10: torch.Tensor) -> torch.Tensor:
    """Feature density from SAELens's sparsity (log10 density; -10 or less means the feature never fired)."""
    log10 = log10.double()
    return torch.where(log10 <= -10, 0.0, 10**log10)


def read_config(folder: Path) -> SAEConfig:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise InputError(f"no {CONFIG_FILE} in '{folder}': an SAE folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"'{path}' is not valid JSON ({exc.__class__.__name__}); the SAE folder is damaged") from None
    if not isinstance(data, dict):
        raise InputError(f"'{path}' must hold a JSON object")
    return SAEConfig.from_json(data)


def load_sae_folder(
    folder: str | os.PathLike, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> SAE:
    """Read and validate an SAE folder (SAELens layout): the file's tensor names and shapes are checked
    against cfg.json from its header, and the size against free memory, before anything is allocated."""
    return load_dictionary_folder(folder, dtype=dtype, device=device, kind=SAE)  # type: ignore[return-value]


def load_dictionary_folder(
    folder: str | os.PathLike,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    kind: type[Dictionary] = Dictionary,
    config: SAEConfig | None = None,
) -> Dictionary:
    """``load_sae_folder`` for any registered kind (transcoders too); ``kind`` refuses others in one line.
    ``config`` replaces the folder's ``cfg.json`` as read (published transcoders whose hook names need
    translating first: ``transcoder_layouts``)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"SAE folder '{folder}' does not exist")
    cfg = config or read_config(folder)
    built = dictionary_class(cfg.architecture)
    if not issubclass(built, kind):
        noun = "an SAE" if kind is SAE else f"a {kind.__name__}"
        raise InputError(f"'{folder}' holds a '{cfg.architecture}' dictionary, not {noun}")
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise InputError(f"no {WEIGHTS_FILE} in '{folder}'")
    try:
        with safe_open(weights_path, framework="pt") as header:
            stored = {name: tuple(header.get_slice(name).get_shape()) for name in header.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError) as exc:
        raise InputError(f"'{weights_path}' is not a readable safetensors file ({exc}); download it again") from None
    expected = SAE.shapes_for(cfg, optional=stored)  # e.g. a BatchTopK SAE's learned threshold, when stored
    check_shapes(stored, expected, cfg, weights_path)
    check_memory(expected, dtype, device, f"the SAE in '{folder}' (d_in={cfg.d_in}, d_sae={cfg.d_sae})")
    try:
        tensors = load_file(weights_path)
    except (SafetensorError, OSError) as exc:
        raise InputError(f"'{weights_path}' is not a readable safetensors file ({exc}); download it again") from None
    sae = built(cfg, dtype=dtype, device=device, optional=stored)
    check_tensors(tensors, sae, weights_path)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            param.copy_(tensors[name].to(dtype))
    sae.to(device)
    return sae


def check_shapes(
    shapes: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], cfg: SAEConfig, path: Path
) -> None:
    """One-line error naming the first missing tensor or the first whose shape disagrees with the config."""
    missing = [name for name in expected if name not in shapes]
    if missing:
        raise InputError(
            f"'{path}' lacks {', '.join(missing)} needed by a {cfg.architecture} SAE; the file and cfg.json disagree"
        )
    for name, shape in expected.items():
        if shapes[name] != shape:
            raise InputError(
                f"'{path}': {name} has shape {list(shapes[name])} but cfg.json (d_in={cfg.d_in}, d_sae={cfg.d_sae}) "
                f"needs {list(shape)}"
            )


def check_tensors(tensors: dict[str, torch.Tensor], sae: Dictionary, path: Path) -> None:
    check_shapes({name: tuple(t.shape) for name, t in tensors.items()}, sae.parameter_shapes(), sae.cfg, path)
    for name in sae.parameter_shapes():
        if not torch.isfinite(tensors[name].float()).all():
            raise InputError(f"'{path}': {name} contains NaN or infinite values; the SAE is damaged")


def save_sae(
    sae: SAE,
    folder: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    extra_files: dict[str, bytes] | None = None,
    sparsity: torch.Tensor | None = None,
) -> Path:
    """Write ``sae`` to ``folder`` atomically (replacing what was there) with the store's ``manifest.json``;
    ``extra_files`` (name -> bytes), such as training metrics or labels, are written beside it in the same
    atomic step."""
    final = Path(folder).expanduser()
    summary = {"hook": sae.cfg.hook, "architecture": sae.cfg.architecture, "d_sae": sae.d_sae}
    with save(SAES, None, final, summary=summary) as staging:
        write_sae_files(sae, staging, dtype=dtype, extra_files=extra_files, sparsity=sparsity)
    return final


def write_sae_files(
    sae: Dictionary,
    into: Path,
    *,
    dtype: torch.dtype | None = None,
    extra_files: dict[str, bytes] | None = None,
    sparsity: torch.Tensor | None = None,
) -> None:
    """``save_sae``'s files, written into the folder ``into`` (a staging folder: the caller makes it atomic,
    with ``glasslab.store.save``)."""
    dtype = dtype or next(sae.parameters()).dtype
    cfg = sae.cfg.to_json()
    cfg["dtype"] = str(dtype).removeprefix("torch.")
    tensors = {name: param.detach().to("cpu", dtype).contiguous() for name, param in sae.named_parameters()}
    save_file(tensors, into / WEIGHTS_FILE)
    (into / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    if sparsity is not None:
        save_file({"sparsity": sparsity.detach().float().cpu().contiguous()}, into / SPARSITY_FILE)
    for name, content in (extra_files or {}).items():
        if Path(name).name != name:
            raise InputError(f"extra SAE file name '{name}' must be a plain file name")
        (into / name).write_bytes(content)
