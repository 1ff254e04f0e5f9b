"""Find and load an SAE by any of the names people use, and check it fits the model it is used with.

``load_sae(source, model)`` accepts:

- a local folder in SAELens's layout (``cfg.json`` + ``sae_weights.safetensors``);
- ``default:HOOK`` (or ``default:LAYER`` for ``blocks.LAYER.resid_post``, or ``default:FOLDER``): an SAE
  shipped inside glasslab for the offline default model (``glasslab/sae/shipped/<folder>``);
- ``store:NAME`` (or a bare NAME when a model is given): an SAE the user trained, in
  ``location(SAES, model.key, NAME)``;
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
from pathlib import Path
from typing import Any

import torch

from ..errors import GlasslabError, InputError
from ..model.model import Model
from ..store import SAE_LABELS, SAES, is_name, location, verify
from .files import CONFIG_FILE, load_sae_folder, read_config
from .fit import check_fits
from .hub import RELEASES, from_sae_lens, is_sae_lens, load_hub_repo, load_release, same_model
from .labels_file import LABELS_FILE, FeatureLabel, read_labels
from .origins import SAEOrigin, origin_of, with_origin
from .sae import SAE
from .sae_config import SAEConfig

SHIPPED_ROOT = Path(__file__).resolve().parents[1] / "sae" / "shipped"  # package data of glasslab.sae
DEFAULT_MODEL = "gemma-3-270m"


def labels_folder(sae: SAE) -> Path | None:
    """Where this SAE's ``labels.json`` lives: beside the SAE when it has one there, else (hub SAEs with a
    Neuronpedia page) a folder in the store where fetched labels are cached."""
    folder = origin_of(sae).folder
    if folder is not None and (folder / LABELS_FILE).is_file():
        return folder
    if sae.cfg.neuronpedia_id:
        return location(SAE_LABELS) / re.sub(r"[^A-Za-z0-9._-]+", "--", sae.cfg.neuronpedia_id)
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
    elif is_sae_lens(source):
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
        return load_hub_repo(text.removeprefix("hf://"), dtype, device)
    for prefix in ("default:", "shipped:"):
        if text.startswith(prefix):
            return _load_shipped(text[len(prefix) :], model, dtype, device)
    if text.startswith("store:"):
        return _load_store(text.removeprefix("store:"), model, dtype, device)
    path = Path(text).expanduser()
    if path.is_dir():
        return with_origin(load_sae_folder(path, dtype=dtype, device=device), SAEOrigin(text, path.resolve()))
    if text.startswith((".", "/", "~")):
        raise InputError(f"SAE folder '{text}' does not exist; check the path")
    release, _, rest = text.partition("/")
    if release in RELEASES:
        return load_release(release, sae_id or rest, dtype=dtype, device=device)
    if sae_id is not None:
        raise InputError(f"'{release}' is not a release glasslab knows ({', '.join(RELEASES)})")
    if "/" not in text:
        if model is not None and is_name(text) and (location(SAES, model.key, text) / CONFIG_FILE).is_file():
            return _load_store(text, model, dtype, device)
        raise InputError(
            f"'{text}' is not an SAE folder, a release ({', '.join(RELEASES)}), default:HOOK, store:NAME or "
            "OWNER/REPO; `glasslab sae list` shows the SAEs known for a model"
        )
    return load_hub_repo(text, dtype, device)


def _load_shipped(name: str, model: Model | None, dtype, device) -> SAE:
    """``default:`` names: a folder name, a hook, or a layer number (its resid_post)."""
    hook = f"blocks.{name}.resid_post" if name.isdigit() else name
    candidates = [(folder, cfg) for folder, cfg in shipped() if model is None or fits_quietly(cfg, model)]
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
    return with_origin(load_sae_folder(folder, dtype=dtype, device=device), SAEOrigin(f"default:{name}", folder))


def shipped() -> Iterator[tuple[Path, SAEConfig]]:
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
    folder = location(SAES, model.key, name)
    if not (folder / CONFIG_FILE).is_file():
        raise InputError(
            f"no SAE named '{name}' in the store for {model.name} ({folder}); train one with `glasslab sae train`"
        )
    verify(folder, SAES)  # a manifest's files all there, at their sizes (SAEs saved before manifests: none)
    return with_origin(load_sae_folder(folder, dtype=dtype, device=device), SAEOrigin(f"store:{name}", folder))


def fits_quietly(cfg: SAEConfig, model: Model) -> bool:
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
