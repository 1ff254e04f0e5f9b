"""Sparse-autoencoder operations: the SAEs available for the loaded model, features per token, a feature's
dashboard, feature clamps (baseline vs clamped, or a sweep of amounts), and a person's feature labels.

A client names an SAE only by a name from ``GET /api/saes`` (shipped, in the store, or a known hub
release); never by a path. Loaded SAEs are kept per model (a switch drops them).
"""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi import APIRouter, Request

from ..dictionaries.hub import RELEASES
from ..dictionaries.loading import SHIPPED_ROOT
from ..dictionaries.user_labels import folder_for, sae_key
from ..errors import InputError
from ..methods.features.atlas import ATLAS_FILE
from ..methods.features.clamp import clamp_features, clamp_sweep
from ..methods.features.dashboard import NEURONPEDIA, feature_dashboard
from ..methods.features.encode import sae_features
from ..model.model import Model
from ..operations import OPERATIONS as DECLARED
from ..operations.feature_files import write_label
from ..operations.options import Options
from ..sae import SAE, available_saes, load_sae
from ..store import SAES, location
from .ops import Ctx, NotFound, declared, services, stamp
from .state import ModelState

router = APIRouter(prefix="/api", tags=["sae"])
_loaded: dict[tuple[str, str, tuple], SAE] = {}  # (model key, SAE name, stamp of its files) -> SAE
_loaded_lock = threading.Lock()


def resolve(model: Model, name: str | None) -> tuple[str, Path | None]:
    """The SAE's name (default: the first available on disk), checked to be one offered for ``model``, and its
    folder when it is saved on this machine (the store or glasslab's shipped SAEs)."""
    known = available_saes(model)
    if name is None:
        on_disk = [k for k in known if k.on_disk]
        if not on_disk:
            raise NotFound(f"no SAE is available for {model.name} on this machine; train one (glasslab sae train)")
        name = on_disk[0].name
    elif name not in {k.name for k in known}:
        raise NotFound(f"sae: '{name}' is not one of the SAEs for {model.name} (GET /api/saes lists them)")
    return name, _folder(model, name)


def _folder(model: Model, name: str) -> Path | None:
    """Where a listed SAE is saved on this machine: the store or glasslab's shipped SAEs (None for a hub
    release: its files in the HF cache are fixed by their revision)."""
    if name.startswith("store:"):
        return location(SAES, model.key, name.removeprefix("store:"))
    if name.startswith("default:"):
        return SHIPPED_ROOT / name.removeprefix("default:")
    return None


def sae_reads(state: ModelState, body: Options) -> tuple:
    """The SAE a request reads and its files as they are now, the user's labels of it included: retrained,
    relabelled or deleted, it gets a new key, so neither a cached result nor a loaded copy of the old one is used."""
    name, folder = resolve(state.model, body.sae)
    release, _, sae_id = name.partition("/")
    labels = folder_for(sae_key(folder, *((release, sae_id) if release in RELEASES else ())))
    return name, stamp(folder) if folder is not None else (), stamp(labels) if labels is not None else ()


def load_listed(model: Model, name: str | None) -> tuple[SAE, str]:
    """The named SAE (default: the first available on disk), loaded once per version of its files (a loaded
    SAE reads the user's labels again when they change: ``labels_of``)."""
    name, folder = resolve(model, name)
    key = (model.key, name, stamp(folder) if folder is not None else ())
    with _loaded_lock:
        if key not in _loaded:
            if len(_loaded) >= 8:
                _loaded.pop(next(iter(_loaded)))
            _loaded[key] = load_sae(name, model)
        return _loaded[key], name


def _neuronpedia(sae: SAE) -> str | None:
    np_id = sae.cfg.neuronpedia_id
    return f"{NEURONPEDIA}/{np_id}/{{feature}}" if np_id else None


def features_op(ctx: Ctx, body: Options) -> dict:
    ctx.prompt(body.prompt)
    sae, name = load_listed(ctx.model, body.sae)
    result = sae_features(ctx.model, sae, body.prompt, top=body.top, max_density=body.max_density).to_dict()
    return {**result, "sae_name": name, "neuronpedia": _neuronpedia(sae)}


def dashboard_op(ctx: Ctx, body: Options) -> dict:
    sae, name = load_listed(ctx.model, body.sae)
    result = feature_dashboard(ctx.model, sae, body.feature, sequences=body.sequences, seq_len=body.seq_len, k=body.k)
    result = result.to_dict()
    return {**result, "sae_name": name}


def clamp_op(ctx: Ctx, body: Options) -> dict:
    ctx.prompt(body.prompt)
    sae, name = load_listed(ctx.model, body.sae)
    options = dict(
        positions=body.positions, max_new_tokens=body.max_new_tokens, temperature=body.temperature, seed=body.seed
    )
    if body.amounts is not None:
        if body.mode == "zero":
            raise InputError("amounts: a sweep sets (mode 'value') or scales (mode 'scale') the features")
        result = clamp_sweep(ctx.model, sae, body.prompt, body.features, body.amounts, mode=body.mode, **options)
    else:
        amount = {"value": {"value": body.amount}, "scale": {"scale": body.amount}, "zero": {"zero": True}}[body.mode]
        if body.mode != "zero" and body.amount is None:
            raise InputError(f"amount: say what to {'set' if body.mode == 'value' else 'scale'} the features to")
        result = clamp_features(ctx.model, sae, body.prompt, body.features, **amount, **options)
    return {**result.to_dict(), "sae_name": name}


def label_op(ctx: Ctx, body: Options) -> dict:
    """Kept in glasslab's store (``glasslab.sae.set_feature_label``), never in the SAE's own files; cached
    features and dashboards of the SAE are recomputed (``sae_reads`` stamps the user's labels)."""
    sae, name = load_listed(ctx.model, body.sae)
    return write_label(sae, name, body.feature, body.label, body.clear).to_dict()


OPERATIONS = [
    # The store's SAEs change as SAEs are trained or deleted: listed afresh on every request.
    declared(DECLARED["sae-list"], deterministic=lambda body: False),
    declared(DECLARED["sae-label"], label_op, deterministic=lambda body: False),
    declared(DECLARED["sae-features"], features_op, reads=sae_reads),
    declared(DECLARED["sae-dashboard"], dashboard_op, reads=sae_reads),
    declared(
        DECLARED["sae-clamp"],
        clamp_op,
        deterministic=lambda body: body.temperature == 0.0 or body.seed is not None,
        reads=sae_reads,
    ),
]


@router.get("/saes", summary="SAEs for the loaded model (shipped, in the store, known hub releases), with their layer.")
def list_saes(request: Request) -> dict:
    """Each SAE with its layer, and ``training``: what the workbench proposes to train for a layer with none."""
    model = services(request).state.model
    saes = []
    for known in available_saes(model):
        folder = _folder(model, known.name)
        precomputed = folder is not None and (folder / ATLAS_FILE).is_file()  # dashboards open at once
        saes.append({**known.to_dict(), "layer": model.hook_spec(known.hook).layer, "precomputed": precomputed})
    plan = services(request).sae_training
    training = {"architecture": "topk", "d_sae": plan["expansion"] * model.d_model, **plan}
    return {"kind": "saes", "model": model.name, "n_layers": model.n_layers, "saes": saes, "training": training}
