"""SAEs from the Hugging Face hub: the registry of well-known releases, hub repos in SAELens's layout,
Gemma Scope's raw JumpReLU parameters and installed ``sae_lens`` objects, converted to glasslab's SAE.

Hub files come through ``huggingface_hub`` (its cache, ``HF_HUB_OFFLINE`` honoured); offline and not
cached is a one-line error saying what to download. Gemma Scope's ``params.npz`` is read with
``np.load(allow_pickle=False)``: never unpickled.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .files import CONFIG_FILE, WEIGHTS_FILE, check_tensors, load_sae_folder
from .origins import SAEOrigin, with_origin
from .sae import SAE
from .sae_config import SAEConfig


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


def load_hub_repo(spec: str, dtype, device) -> SAE:
    parts = [p for p in spec.strip("/").split("/") if p]
    if len(parts) < 2:
        raise InputError(f"'{spec}' is not OWNER/REPO[/SUBFOLDER]")
    repo, sub = "/".join(parts[:2]), "/".join(parts[2:])
    prefix = f"{sub}/" if sub else ""
    what = f"SAE '{spec}'"
    cfg_path = _hub_file(repo, prefix + CONFIG_FILE, what)
    _hub_file(repo, prefix + WEIGHTS_FILE, what)
    folder = cfg_path.parent
    return with_origin(load_sae_folder(folder, dtype=dtype, device=device), SAEOrigin(spec, folder))


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
    return with_origin(sae.to(device), origin)


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


def is_sae_lens(obj: Any) -> bool:
    return type(obj).__module__.startswith("sae_lens") and hasattr(obj, "cfg") and hasattr(obj, "state_dict")


def from_sae_lens(obj: Any, *, hook: str | None = None, dtype: torch.dtype = torch.float32) -> SAE:
    """glasslab's SAE with the same weights as an installed ``sae_lens`` SAE object.

    ``hook`` is needed when the object does not record the hook it was trained on."""
    if not is_sae_lens(obj):
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
    return with_origin(sae, SAEOrigin(f"sae_lens {type(obj).__name__}"))
