"""Find and load an SAE by any of the names people use, and check it fits the model it is used with.

``load_sae(source, model)`` accepts:

- a local folder in SAELens's layout (``cfg.json`` + ``sae_weights.safetensors``);
- ``default:HOOK`` (or ``default:LAYER`` for ``blocks.LAYER.resid_post``, or ``default:FOLDER``): an SAE
  shipped inside glasslab for the offline default model (``glasslab/sae/shipped/<folder>``);
- ``store:NAME`` (or a bare NAME when a model is given): an SAE the user trained, in
  ``store_path("saes", model.key, NAME)``;
- ``RELEASE/ID`` for well-known releases (``gpt2-small-res-jb/blocks.8.hook_resid_pre``,
  ``gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical``,
  ``gemma-scope-2-270m-pt-res/layer_12_width_16k_l0_medium``), or RELEASE with ``sae_id=``;
- ``hf://OWNER/REPO[/SUBFOLDER]`` or ``OWNER/REPO[/SUBFOLDER]``: any hub repo in SAELens's layout.

Hub files come through ``huggingface_hub`` (its cache, ``HF_HUB_OFFLINE`` honoured); offline and not
cached is a one-line error saying what to download. Gemma Scope ships raw JumpReLU parameters
(``params.npz``, or ``params.safetensors`` for Gemma Scope 2) without a ``cfg.json``: they are converted
here (``np.load(allow_pickle=False)``: never unpickled). An installed ``sae_lens`` SAE object converts
with ``from_sae_lens``.

With a model, every loaded SAE is checked: its hook must exist there with the SAE's width
(``check_fits``), and the model it was trained on must be this one (names compared loosely:
``google/gemma-3-270m`` = ``gemma-3-270m``, ``gpt2-small`` = ``gpt2``); ``allow_other_model=True``
skips the name check for a model known under another name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import GlasslabError, InputError
from ..model.model import Model
from ..store import store_path
from .config import SAEConfig
from .files import CONFIG_FILE, WEIGHTS_FILE, check_tensors, load_sae_folder, read_config
from .fit import check_fits
from .labels_file import LABELS_FILE, FeatureLabel, read_labels
from .sae import SAE

SHIPPED_ROOT = Path(__file__).parent / "shipped"
DEFAULT_MODEL = "gemma-3-270m"


# -- where an SAE came from ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SAEOrigin:
    """Kept on a loaded SAE as ``sae.origin``: its name (what ``load_sae`` was given) and its folder
    (where ``labels.json`` may sit beside it), for dashboards and the CLI."""

    source: str
    folder: Path | None = None
    release: str | None = None
    sae_id: str | None = None


def origin_of(sae: SAE) -> SAEOrigin:
    return getattr(sae, "origin", None) or SAEOrigin(source=repr(sae))


def _with_origin(sae: SAE, origin: SAEOrigin) -> SAE:
    sae.origin = origin
    return sae


def labels_folder(sae: SAE) -> Path | None:
    """Where this SAE's ``labels.json`` lives: beside the SAE when it has one there, else (hub SAEs with a
    Neuronpedia page) a folder in the store where fetched labels are cached."""
    folder = origin_of(sae).folder
    if folder is not None and (folder / LABELS_FILE).is_file():
        return folder
    if sae.cfg.neuronpedia_id:
        return store_path("sae-labels", re.sub(r"[^A-Za-z0-9._-]+", "--", sae.cfg.neuronpedia_id))
    return folder


def labels_of(sae: SAE) -> dict[int, FeatureLabel]:
    """The SAE's feature labels with the user's own (user_labels.py, in the store) over them; empty when it has
    none. Read once and kept on the SAE, read again when the user's labels file changes (another process)."""
    from .user_labels import overlay, user_labels, user_stamp  # it names SAEs through this module

    now = user_stamp(sae)
    cached = getattr(sae, "labels_cache", None)
    if cached is None or getattr(sae, "labels_stamp", None) != now:
        cached = overlay(read_labels(labels_folder(sae), sae.d_sae), user_labels(sae))
        sae.labels_cache, sae.labels_stamp = cached, now
    return cached


# -- the registry of well-known releases (data) ---------------------------------------------------------
@dataclass(frozen=True)
class Release:
    """A published family of SAEs on the hub.

    ``ids`` is a regular expression every valid id matches (its ``layer`` group names the layer);
    ``listed`` are the ids offered by ``available_saes``; ``path`` turns an id into the folder in the
    repo; ``canonical`` maps ids to folders where no rule gives them; ``layout`` is ``saelens``
    (cfg.json + sae_weights.safetensors) or ``gemma_scope`` (raw JumpReLU ``params.npz`` /
    ``params.safetensors``); ``hook`` and ``neuronpedia`` are formats filled from the id's groups.
    """

    name: str
    repo: str
    model: str
    layout: str
    ids: str
    listed: tuple[str, ...]
    path: str = "{id}"
    hook: str | None = None  # saelens layout: from cfg.json
    neuronpedia: str | None = None
    neuronpedia_when: str | None = None  # a regex the id must match to have a Neuronpedia page
    canonical: dict[str, str] = field(default_factory=dict)
    params_file: str = "params.npz"

    def match(self, sae_id: str) -> re.Match | None:
        return re.fullmatch(self.ids, sae_id)

    def folder(self, sae_id: str) -> str:
        return self.canonical.get(sae_id) or self.path.format(id=sae_id)

    def neuronpedia_id(self, match: re.Match) -> str | None:
        if self.neuronpedia is None or (self.neuronpedia_when and not re.search(self.neuronpedia_when, match[0])):
            return None
        groups = match.groupdict()
        if "layer" in groups and groups.get("hook") == "hook_resid_post":  # jb: resid_post L = resid_pre L+1
            groups["layer"] = str(int(groups["layer"]) + 1)
        return self.neuronpedia.format(**groups)


# Gemma Scope's canonical 16k residual SAEs: the average-L0 folder Google marked canonical, per layer.
_GEMMA_2B_CANONICAL_L0 = (105, 102, 141, 59, 124, 68, 70, 69, 71, 73, 77, 80, 82, 84, 84, 78, 78, 77, 74, 73, 71, 70)
_GEMMA_2B_CANONICAL_L0 += (72, 75, 73, 116)
_GEMMA_SCOPE_2_ID = r"layer_(?P<layer>\d+)_width_(?P<width>\d+[km])_l0_(?P<size>small|medium|big)(?:_seed_\d+)?"

RELEASES: dict[str, Release] = {
    release.name: release
    for release in (
        Release(
            "gpt2-small-res-jb",
            "jbloom/GPT2-Small-SAEs-Reformatted",
            "gpt2-small",
            "saelens",
            r"blocks\.(?P<layer>\d|1[01])\.(?P<hook>hook_resid_pre|hook_resid_post)",
            (*(f"blocks.{layer}.hook_resid_pre" for layer in range(12)), "blocks.11.hook_resid_post"),
            neuronpedia="gpt2-small/{layer}-res-jb",
        ),
        Release(
            "gemma-scope-2b-pt-res",
            "google/gemma-scope-2b-pt-res",
            "gemma-2-2b",
            "gemma_scope",
            r"layer_(?P<layer>\d+)/width_(?P<width>\d+[km])/average_l0_\d+",
            (),
            hook="blocks.{layer}.resid_post",
        ),
        Release(
            "gemma-scope-2b-pt-res-canonical",
            "google/gemma-scope-2b-pt-res",
            "gemma-2-2b",
            "gemma_scope",
            r"layer_(?P<layer>\d+)/width_(?P<width>16k)/canonical",
            tuple(f"layer_{layer}/width_16k/canonical" for layer in range(26)),
            hook="blocks.{layer}.resid_post",
            neuronpedia="gemma-2-2b/{layer}-gemmascope-res-{width}",
            canonical={
                f"layer_{layer}/width_16k/canonical": f"layer_{layer}/width_16k/average_l0_{l0}"
                for layer, l0 in enumerate(_GEMMA_2B_CANONICAL_L0)
            },
        ),
        *(
            Release(
                f"gemma-scope-2-270m-{variant}-res",
                f"google/gemma-scope-2-270m-{variant}",
                "gemma-3-270m" + ("-it" if variant == "it" else ""),
                "gemma_scope",
                _GEMMA_SCOPE_2_ID,
                tuple(f"layer_{layer}_width_16k_l0_medium" for layer in (5, 9, 12, 15)),
                path="resid_post/{id}",
                hook="blocks.{layer}.resid_post",
                neuronpedia="gemma-3-270m" + ("-it" if variant == "it" else "") + "/{layer}-gemmascope-2-res-{width}",
                neuronpedia_when=r"_l0_medium$",
                params_file="params.safetensors",
            )
            for variant in ("pt", "it")
        ),
    )
}

_MODEL_ALIASES = {"gpt2-small": "gpt2", "openai-community/gpt2": "gpt2"}


def same_model(a: str, b: str) -> bool:
    """Do two model names denote the same model? Organisation prefixes and known aliases are ignored."""
    return _normal_model_name(a) == _normal_model_name(b)


def _normal_model_name(name: str) -> str:
    text = name.strip().lower()
    text = _MODEL_ALIASES.get(text, text).rsplit("/", 1)[-1]
    return _MODEL_ALIASES.get(text, text)


# -- loading --------------------------------------------------------------------------------------------
def load_sae(
    source: Any,
    model: Model | None = None,
    *,
    sae_id: str | None = None,
    hook: str | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    allow_other_model: bool = False,
) -> SAE:
    """An SAE from a folder, ``default:HOOK``, ``store:NAME``, ``RELEASE/ID``, a hub repo, an SAE or a
    ``sae_lens`` SAE object (see the module docstring); checked against ``model`` when one is given.

    ``hook`` additionally requires the SAE to read that hook (a clear error for the wrong layer).
    """
    if device is None:
        device = model.device if model is not None else "cpu"
    if isinstance(source, SAE):
        sae = source
    elif _is_sae_lens(source):
        sae = from_sae_lens(source)
    elif isinstance(source, str | os.PathLike):
        sae = _load_named(str(source), model, sae_id, dtype, device)
    else:
        raise InputError(f"load_sae takes a folder or SAE name, not {type(source).__name__}")
    if hook is not None and sae.hook != hook:
        raise InputError(f"this SAE reads '{sae.hook}', not '{hook}': pick the SAE made for {hook}")
    if model is not None:
        validate(sae, model, allow_other_model=allow_other_model)
    return sae.to(device=device)


def validate(sae: SAE, model: Model, *, allow_other_model: bool = False) -> None:
    """One-line error if ``sae`` does not fit ``model`` (hook, width) or was trained on another model."""
    check_fits(sae, model)
    trained_on = sae.cfg.model_name
    if trained_on and not allow_other_model and not same_model(trained_on, model.name):
        raise InputError(
            f"this SAE was trained on {trained_on}, not {model.name} (its shape fits, but its features would "
            "be meaningless on another model); if they are the same model under two names, pass "
            "allow_other_model=True (CLI: --any-model)"
        )


def _load_named(text: str, model: Model | None, sae_id: str | None, dtype, device) -> SAE:
    if not text.strip():
        raise InputError("no SAE given; pass a folder, default:HOOK, RELEASE/ID or OWNER/REPO")
    if text.startswith("hf://"):
        return _load_hub_repo(text.removeprefix("hf://"), dtype, device)
    for prefix in ("default:", "shipped:"):
        if text.startswith(prefix):
            return _load_shipped(text[len(prefix) :], model, dtype, device)
    if text.startswith("store:"):
        return _load_store(text.removeprefix("store:"), model, dtype, device)
    path = Path(text).expanduser()
    if path.is_dir():
        return _with_origin(load_sae_folder(path, dtype=dtype, device=device), SAEOrigin(text, path.resolve()))
    if text.startswith((".", "/", "~")):
        raise InputError(f"SAE folder '{text}' does not exist; check the path")
    release, _, rest = text.partition("/")
    if release in RELEASES:
        return load_release(release, sae_id or rest, dtype=dtype, device=device)
    if sae_id is not None:
        raise InputError(f"'{release}' is not a release glasslab knows ({', '.join(RELEASES)})")
    if "/" not in text:
        if model is not None and (store_path("saes", model.key, text) / CONFIG_FILE).is_file():
            return _load_store(text, model, dtype, device)
        raise InputError(
            f"'{text}' is not an SAE folder, a release ({', '.join(RELEASES)}), default:HOOK, store:NAME or "
            "OWNER/REPO; `glasslab sae list` shows the SAEs known for a model"
        )
    return _load_hub_repo(text, dtype, device)


def _load_shipped(name: str, model: Model | None, dtype, device) -> SAE:
    """``default:`` names: a folder name, a hook, or a layer number (its resid_post)."""
    hook = f"blocks.{name}.resid_post" if name.isdigit() else name
    candidates = [(folder, cfg) for folder, cfg in _shipped() if model is None or _fits_quietly(cfg, model)]
    found = [(folder, cfg) for folder, cfg in candidates if folder.name == name or cfg.hook == hook]
    if not found:
        have = ", ".join(sorted({cfg.hook for _, cfg in candidates})) or "none"
        raise InputError(
            f"no SAE shipped with glasslab for '{hook}' (shipped for this model: {have}); see `glasslab sae list`"
        )
    if len({folder for folder, _ in found}) > 1:
        names = ", ".join(f"default:{folder.name}" for folder, _ in found)
        raise InputError(f"several shipped SAEs read {hook}: pick one of {names}")
    folder = found[0][0]
    return _with_origin(load_sae_folder(folder, dtype=dtype, device=device), SAEOrigin(f"default:{name}", folder))


def _shipped() -> Iterator[tuple[Path, SAEConfig]]:
    if not SHIPPED_ROOT.is_dir():
        return
    for folder in sorted(SHIPPED_ROOT.iterdir()):
        if (folder / CONFIG_FILE).is_file():
            try:
                yield folder, read_config(folder)
            except GlasslabError:
                continue  # a damaged shipped folder is reported when it is loaded by name, not while listing


def _load_store(name: str, model: Model | None, dtype, device) -> SAE:
    if model is None:
        raise InputError(f"store:{name} names an SAE trained for one model: load the model and pass it too")
    folder = store_path("saes", model.key, name)
    if not (folder / CONFIG_FILE).is_file():
        raise InputError(
            f"no SAE named '{name}' in the store for {model.name} ({folder}); train one with `glasslab sae train`"
        )
    return _with_origin(load_sae_folder(folder, dtype=dtype, device=device), SAEOrigin(f"store:{name}", folder))


# -- the hub --------------------------------------------------------------------------------------------
def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _hub_file(repo: str, filename: str, what: str) -> Path:
    """One file from the hub through the HF cache, with one-line errors for every way it can fail."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    offline = _offline()
    try:
        return Path(hf_hub_download(repo, filename, local_files_only=offline))
    except LocalEntryNotFoundError:  # not cached, and offline or the hub unreachable
        where = "HF_HUB_OFFLINE is set" if offline else "the hub could not be reached"
        folder = filename.rsplit("/", 1)[0] if "/" in filename else ""
        include = f" --include '{folder}/*'" if folder else ""
        raise InputError(
            f"{what} is not in the local Hugging Face cache and {where}; download it on a connected machine "
            f"(hf download {repo}{include}) or pass a local SAE folder"
        ) from None
    except EntryNotFoundError:
        raise InputError(f"{what}: the hub repo '{repo}' has no file '{filename}'; check the SAE id") from None
    except RepositoryNotFoundError:
        raise InputError(f"{what}: no repo '{repo}' on the Hugging Face hub; check the name") from None
    except (HfHubHTTPError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise InputError(
            f"{what}: the hub refused or failed ({first}); check the name, your token and network"
        ) from None


def _load_hub_repo(spec: str, dtype, device) -> SAE:
    parts = [p for p in spec.strip("/").split("/") if p]
    if len(parts) < 2:
        raise InputError(f"'{spec}' is not OWNER/REPO[/SUBFOLDER]")
    repo, sub = "/".join(parts[:2]), "/".join(parts[2:])
    prefix = f"{sub}/" if sub else ""
    what = f"SAE '{spec}'"
    cfg_path = _hub_file(repo, prefix + CONFIG_FILE, what)
    _hub_file(repo, prefix + WEIGHTS_FILE, what)
    folder = cfg_path.parent
    return _with_origin(load_sae_folder(folder, dtype=dtype, device=device), SAEOrigin(spec, folder))


def load_release(release: str, sae_id: str, *, dtype=torch.float32, device="cpu") -> SAE:
    """One SAE of a well-known release by its id (SAELens's naming)."""
    entry = RELEASES.get(release)
    if entry is None:
        raise InputError(f"release '{release}' is unknown; glasslab knows {', '.join(RELEASES)}")
    if not sae_id:
        example = entry.listed[0] if entry.listed else "ID"
        raise InputError(f"name one SAE of {release}, e.g. {release}/{example} (glasslab sae list shows more)")
    match = entry.match(sae_id)
    if match is None:
        examples = ", ".join(entry.listed[:3]) or entry.ids
        raise InputError(f"'{sae_id}' is not an SAE id of {release} (e.g. {examples})")
    folder = entry.folder(sae_id)
    what = f"SAE {release}/{sae_id}"
    origin = SAEOrigin(f"{release}/{sae_id}", None, release, sae_id)
    if entry.layout == "saelens":
        cfg_path = _hub_file(entry.repo, f"{folder}/{CONFIG_FILE}", what)
        _hub_file(entry.repo, f"{folder}/{WEIGHTS_FILE}", what)
        sae = load_sae_folder(cfg_path.parent, dtype=dtype, device=device)
        origin = SAEOrigin(origin.source, cfg_path.parent, release, sae_id)
    else:
        params = _hub_file(entry.repo, f"{folder}/{entry.params_file}", what)
        hook = entry.hook.format(**match.groupdict())
        sae = from_gemma_scope(params, hook=hook, model_name=entry.model, dtype=dtype)
    sae.cfg.neuronpedia_id = sae.cfg.neuronpedia_id or entry.neuronpedia_id(match)
    sae.cfg.model_name = sae.cfg.model_name or entry.model
    return _with_origin(sae.to(device), origin)


# -- conversions ----------------------------------------------------------------------------------------
_GEMMA_SCOPE_NAMES = {"w_enc": "W_enc", "w_dec": "W_dec", "b_enc": "b_enc", "b_dec": "b_dec", "threshold": "threshold"}


def from_gemma_scope(
    path: str | os.PathLike, *, hook: str, model_name: str | None = None, dtype: torch.dtype = torch.float32
) -> SAE:
    """A JumpReLU SAE from Gemma Scope's raw parameters (``params.npz``, or Gemma Scope 2's
    ``params.safetensors``): ``W_enc/w_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``, ``b_enc``, ``b_dec``,
    ``threshold``. Gemma Scope encodes the raw activation (no ``b_dec`` subtracted first)."""
    path = Path(path)
    tensors = _read_params(path)
    renamed = {}
    for key, value in tensors.items():
        name = _GEMMA_SCOPE_NAMES.get(key.lower())
        if name is not None:
            renamed[name] = value
    missing = [name for name in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold") if name not in renamed]
    if missing:
        raise InputError(f"'{path}' lacks {', '.join(missing)}; is it a Gemma Scope JumpReLU SAE?")
    if renamed["W_enc"].dim() != 2:
        raise InputError(f"'{path}': W_enc must be a matrix [d_in, d_sae], got shape {list(renamed['W_enc'].shape)}")
    d_in, d_sae = renamed["W_enc"].shape
    cfg = SAEConfig("jumprelu", int(d_in), int(d_sae), hook, model_name=model_name, apply_b_dec_to_input=False)
    sae = SAE(cfg, dtype=dtype)
    check_tensors(renamed, sae, path)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            param.copy_(renamed[name].to(dtype))
    return sae


def _read_params(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError) as exc:
            raise InputError(f"'{path}' is not a readable safetensors file ({exc}); download it again") from None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: torch.from_numpy(np.array(data[key], dtype=np.float32)) for key in data.files}
    except (ValueError, OSError, EOFError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise InputError(f"'{path}' is not a readable .npz of arrays ({reason}); download it again") from None


def _is_sae_lens(obj: Any) -> bool:
    return type(obj).__module__.startswith("sae_lens") and hasattr(obj, "cfg") and hasattr(obj, "state_dict")


def from_sae_lens(obj: Any, *, hook: str | None = None, dtype: torch.dtype = torch.float32) -> SAE:
    """glasslab's SAE with the same weights as an installed ``sae_lens`` SAE object.

    ``hook`` is needed when the object does not record the hook it was trained on."""
    if not _is_sae_lens(obj):
        raise InputError(f"from_sae_lens takes a sae_lens SAE, not {type(obj).__name__}")
    data = obj.cfg.to_dict()
    metadata = dict(data.get("metadata") or {})
    if hook is not None:
        metadata["hook_name"] = hook
    if not (metadata.get("hook_name") or data.get("hook_name")):
        raise InputError("this sae_lens SAE does not record its hook; pass hook='blocks.L.resid_post' (or similar)")
    data["metadata"] = metadata
    cfg = SAEConfig.from_json(data)
    state = {name: value.detach().cpu() for name, value in obj.state_dict().items()}
    if "threshold" not in state and "log_threshold" in state:  # sae_lens training SAEs learn log(threshold)
        state["threshold"] = state["log_threshold"].exp()
    sae = SAE(cfg, dtype=dtype, optional=state)  # e.g. a BatchTopK SAE's learned threshold, where it has one
    check_tensors(state, sae, Path(f"<sae_lens {type(obj).__name__}>"))
    with torch.no_grad():
        for name, param in sae.named_parameters():
            param.copy_(state[name].to(dtype))
    return _with_origin(sae, SAEOrigin(f"sae_lens {type(obj).__name__}"))


# -- discovery ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KnownSAE:
    """An SAE that can be loaded for a model: pass ``name`` to ``load_sae``."""

    name: str
    source: str  # "shipped", "store" or "hub"
    hook: str
    d_sae: int | None
    architecture: str | None
    on_disk: bool  # shipped, in the store, or already in the Hugging Face cache
    neuronpedia: str | None = None
    labels: bool = False  # a labels.json is beside it

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "hook": self.hook,
            "d_sae": self.d_sae,
            "architecture": self.architecture,
            "on_disk": self.on_disk,
            "neuronpedia": self.neuronpedia,
            "labels": self.labels,
        }


def available_saes(model: Model) -> list[KnownSAE]:
    """SAEs known for ``model``: shipped with glasslab, trained into the store, and well-known hub releases
    for its name (on disk or not). Nothing is downloaded."""
    found: list[KnownSAE] = []
    for folder, cfg in _shipped():
        if _fits_quietly(cfg, model):
            found.append(_known(f"default:{folder.name}", "shipped", cfg, folder))
    store = store_path("saes", model.key)
    if store.is_dir():
        for folder in sorted(store.iterdir()):
            if (folder / CONFIG_FILE).is_file() and not folder.name.startswith("."):
                try:
                    cfg = read_config(folder)
                except GlasslabError:
                    continue
                if _fits_quietly(cfg, model):
                    found.append(_known(f"store:{folder.name}", "store", cfg, folder))
    for release in RELEASES.values():
        if not same_model(release.model, model.name):
            continue
        for sae_id in release.listed:
            match = release.match(sae_id)
            groups = match.groupdict()
            hook = release.hook.format(**groups) if release.hook else _saelens_hook(groups)
            if not _hook_exists(model, hook):
                continue
            found.append(
                KnownSAE(
                    name=f"{release.name}/{sae_id}",
                    source="hub",
                    hook=hook,
                    d_sae=_width(groups.get("width")),
                    architecture="jumprelu" if release.layout == "gemma_scope" else None,
                    on_disk=_cached(release, sae_id),
                    neuronpedia=release.neuronpedia_id(match),
                )
            )
    return found


def _known(name: str, source: str, cfg: SAEConfig, folder: Path) -> KnownSAE:
    return KnownSAE(
        name, source, cfg.hook, cfg.d_sae, cfg.architecture, True, cfg.neuronpedia_id, (folder / LABELS_FILE).is_file()
    )


def _fits_quietly(cfg: SAEConfig, model: Model) -> bool:
    try:
        validate(_ShapeOnly(cfg), model)  # type: ignore[arg-type]
    except GlasslabError:
        return False
    return True


class _ShapeOnly:
    """Just enough of an SAE for ``validate`` (no weights are allocated while listing)."""

    def __init__(self, cfg: SAEConfig) -> None:
        self.cfg = cfg
        self.hook = cfg.hook
        self.d_in = cfg.d_in


def _saelens_hook(groups: dict[str, str]) -> str:
    return f"blocks.{groups['layer']}.{groups['hook'].removeprefix('hook_')}"


def _hook_exists(model: Model, hook: str) -> bool:
    try:
        model.hook_spec(hook)
    except GlasslabError:
        return False
    return True


_WIDTHS = {"4k": 4096, "16k": 16384, "32k": 32768, "65k": 65536, "131k": 131072, "262k": 262144, "524k": 524288}


def _width(text: str | None) -> int | None:
    """Gemma Scope's width names are rounded powers of two ("65k" is 65536, "1m" is 2**20)."""
    return {**_WIDTHS, "1m": 1048576}.get(text or "")


def _cached(release: Release, sae_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    name = WEIGHTS_FILE if release.layout == "saelens" else release.params_file
    return isinstance(try_to_load_from_cache(release.repo, f"{release.folder(sae_id)}/{name}"), str)


@dataclass(frozen=True)
class SAECatalog:
    """``available_saes`` as a result (for ``glasslab sae list`` and the app)."""

    model: str
    saes: list[KnownSAE]

    def to_dict(self) -> dict:
        return {"kind": "sae_list", "model": self.model, "saes": [sae.to_dict() for sae in self.saes]}

    def figure(self):
        from ..views.figures import Bars, Figure

        return Figure(
            f"{self.model}: SAEs known for this model",
            [
                Bars(
                    "features per SAE",
                    [sae.name for sae in self.saes],
                    [float(sae.d_sae or 0) for sae in self.saes],
                    "features (0: known once downloaded)",
                    hover=[
                        f"{sae.name}: {sae.source}, {sae.hook}, {'on disk' if sae.on_disk else 'download needed'}"
                        for sae in self.saes
                    ],
                )
            ],
            what_you_see="The SAEs glasslab can load for this model: shipped with glasslab, trained by you into the "
            "store, and published ones on the Hugging Face hub.",
            how_to_read="Pass a name to load_sae(name, model) or to --sae. Hub SAEs need a download unless they are "
            "already in the Hugging Face cache.",
            caveat="Only SAEs glasslab knows of are listed; any SAELens-layout folder or hub repo loads too.",
        )

    def _repr_html_(self) -> str:
        from ..views.html import figure_html

        return figure_html(self.figure())
