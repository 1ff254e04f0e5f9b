"""Load transcoders from any layout the field publishes: ``load_transcoders(source, model)`` returns a
``TranscoderSet`` (per-layer) or a ``CrossLayerTranscoderSet``, each reading ``blocks.L.mlp.in`` and
predicting ``blocks.L.mlp_out`` exactly, ready for ``attribution_graph``.

``source`` is a local folder holding one of:

- ``transcoders.json``: a set glasslab saved (``TranscoderSet.load``);
- ``config.yaml``: circuit-tracer's description (``model_kind`` ``transcoder_set`` or
  ``cross_layer_transcoder``, ``feature_input_hook``, ``feature_output_hook``, optional ``transcoders``: one
  file per layer, local or ``hf://``), with ``layer_<L>.safetensors`` or ``W_enc_<L>``/``W_dec_<L>.safetensors``
  beside it when it lists none;
- ``W_enc_0.safetensors``...: circuit-tracer's cross-layer files without a config (its ``load_clt`` defaults:
  ``hook_resid_mid`` -> ``hook_mlp_out``, or ``input_hook=``/``output_hook=``);
- ``cfg.json`` or ``params.safetensors``/``params.npz``: one SAELens or Gemma Scope transcoder;
- subfolders of those (one per layer; ``select=`` keeps those whose name contains it, e.g. ``width_16k_l0_big``).

or a hub repo in circuit-tracer's layout (``hf://OWNER/REPO[/SUBFOLDER]`` or ``OWNER/REPO[/SUBFOLDER]``), read
through the Hugging Face cache; offline and not cached is a one-line error saying what to download.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..model.model import Model
from .cross_layer import CrossLayerTranscoderSet, CrossLayerWeights
from .files import CONFIG_FILE
from .hub import _hub_file
from .transcoder import Transcoder
from .transcoder_layouts import (
    fold_norm,
    input_site,
    layer_of,
    output_hook,
    read_circuit_tracer_layer,
    read_gemma_scope_transcoder,
    read_saelens_transcoder,
    read_safetensors,
    site_hook,
)
from .transcoder_set import SET_FILE, TranscoderSet

CIRCUIT_TRACER_CONFIG = "config.yaml"
PARAMS_FILES = ("params.safetensors", "params.npz")
Fetch = Callable[[str], Path]  # a file of the source by its name inside it


def load_transcoders(
    source: str | os.PathLike,
    model: Model | None = None,
    *,
    select: str | None = None,
    input_hook: str | None = None,
    output_hook: str | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    allow_other_model: bool = False,
) -> TranscoderSet | CrossLayerTranscoderSet:
    """Transcoders from a published layout (module docstring), checked against ``model`` when given.
    ``input_hook``/``output_hook`` override the layout's hook names (TransformerLens's vocabulary)."""
    text = str(source)
    folder = Path(text).expanduser()
    hooks = (input_hook, output_hook)
    if folder.is_dir():
        found = _from_folder(folder, model, select, hooks)
    elif text.startswith("hf://") or (re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w./-]+)?", text) and not folder.exists()):
        found = _from_hub(text.removeprefix("hf://"), model, hooks)
    else:
        raise InputError(f"transcoder folder '{text}' does not exist; pass a folder or a hub repo OWNER/REPO")
    if model is not None:
        found.check_fits(model, allow_other_model=allow_other_model)
    return found.to(device) if dtype == torch.float32 else _cast(found, dtype, device)


def _cast(found: TranscoderSet | CrossLayerTranscoderSet, dtype: torch.dtype, device) -> Any:
    if isinstance(found, CrossLayerTranscoderSet):
        return found.to(device, dtype)
    for layer in found.layers:
        found.transcoder(layer).to(device=device, dtype=dtype)
    return found


def _from_folder(
    folder: Path, model: Model | None, select: str | None, hooks: tuple[str | None, str | None]
) -> TranscoderSet | CrossLayerTranscoderSet:
    if (folder / SET_FILE).is_file():
        return TranscoderSet.load(folder, model, allow_other_model=True)  # the name is checked by the caller
    if (folder / CIRCUIT_TRACER_CONFIG).is_file():
        return _kept_in(folder, _from_config(_read_yaml(folder / CIRCUIT_TRACER_CONFIG), _local(folder), model, hooks))
    if (folder / "W_enc_0.safetensors").is_file():
        config = {"model_kind": "cross_layer_transcoder"}
        return _kept_in(folder, _from_config(config, _local(folder), model, (hooks[0] or "hook_resid_mid", hooks[1])))
    single = _one_transcoder(folder, model)
    if single is not None:
        return _per_layer_set([single], model)
    parts = sorted(sub for sub in folder.iterdir() if sub.is_dir() and (select is None or select in sub.name))
    transcoders = [t for t in (_one_transcoder(sub, model) for sub in parts) if t is not None]
    if not transcoders:
        raise InputError(
            f"'{folder}' holds no transcoders glasslab reads ({SET_FILE}, {CIRCUIT_TRACER_CONFIG}, "
            f"W_enc_0.safetensors, {CONFIG_FILE} or params.safetensors, or subfolders of them)"
            + (f" matching '{select}'" if select else "")
        )
    return _per_layer_set(transcoders, model)


def _kept_in(folder: Path, found: TranscoderSet | CrossLayerTranscoderSet) -> TranscoderSet | CrossLayerTranscoderSet:
    """A cross-layer transcoder read from a local folder knows it: its labels and dashboards go in
    ``layer-<s>/`` there (``precompute_transcoders``). A per-layer set in a published layout stays without one,
    as before (its layers' folders are the publisher's)."""
    if isinstance(found, CrossLayerTranscoderSet):
        found.folder = folder
    return found


def _one_transcoder(folder: Path, model: Model | None) -> Transcoder | None:
    if (folder / CONFIG_FILE).is_file():
        return read_saelens_transcoder(folder, model)
    for name in PARAMS_FILES:
        if (folder / name).is_file():
            return read_gemma_scope_transcoder(folder / name, layer_of(folder.name), model=model)
    return None


def _per_layer_set(transcoders: list[Transcoder], model: Model | None) -> TranscoderSet:
    by_layer: dict[int, Transcoder] = {}
    for transcoder in transcoders:
        layer = layer_of(transcoder.hook)
        if layer in by_layer:
            raise InputError(
                f"two transcoders for layer {layer} ({by_layer[layer]!r} and {transcoder!r}); pass select= to keep one "
                "width or sparsity"
            )
        by_layer[layer] = transcoder
    n_layers = model.n_layers if model is not None else max(by_layer) + 1
    names = {t.cfg.model_name for t in transcoders if t.cfg.model_name}
    return TranscoderSet(by_layer, n_layers=n_layers, model_name=names.pop() if len(names) == 1 else None)


# -- circuit-tracer's config ----------------------------------------------------------------------------------
def _from_config(
    config: dict[str, Any], fetch: Fetch, model: Model | None, hooks: tuple[str | None, str | None]
) -> TranscoderSet | CrossLayerTranscoderSet:
    kind = config.get("model_kind")
    hook_in = hooks[0] or config.get("feature_input_hook")
    hook_out = hooks[1] or config.get("feature_output_hook") or "hook_mlp_out"
    if not hook_in:
        raise InputError(f"{CIRCUIT_TRACER_CONFIG} names no feature_input_hook (e.g. mlp.hook_in); pass input_hook=")
    site, model_name = input_site(str(hook_in)), config.get("model_name")
    files = [str(path) for path in config.get("transcoders") or []]
    if kind == "transcoder_set":
        files = files or _numbered(fetch, "layer_{}.safetensors", model)
        transcoders = []
        for layer, name in enumerate(files):
            path, out = _resolve(fetch, name), output_hook(str(hook_out), layer, model)
            if path.suffix == ".npz":
                transcoders.append(
                    read_gemma_scope_transcoder(path, layer, model=model, model_name=model_name, site=site)
                )
            else:
                transcoders.append(
                    read_circuit_tracer_layer(path, layer, site=site, hook_out=out, model=model, model_name=model_name)
                )
        return _per_layer_set(transcoders, model)
    if kind == "cross_layer_transcoder":
        output_hook(str(hook_out), 0, model)  # refuses outputs glasslab has no hook for
        if files:
            layers = [_gemma_scope_2_clt_layer(_resolve(fetch, name), layer) for layer, name in enumerate(files)]
        else:
            layers = _circuit_tracer_clt(fetch, len(_numbered(fetch, "W_enc_{}.safetensors", model)))
        if site == "normalised":
            layers = [_folded(weights, layer, model) for layer, weights in enumerate(layers)]
        inputs = [site_hook(site, layer) for layer in range(len(layers))]
        return CrossLayerTranscoderSet(layers, input_hooks=inputs, model_name=model_name, source=str(fetch("")))
    raise InputError(
        f"{CIRCUIT_TRACER_CONFIG}: model_kind must be transcoder_set or cross_layer_transcoder, not {kind!r}"
    )


def _numbered(fetch: Fetch, pattern: str, model: Model | None) -> list[str]:
    """``pattern`` for layers 0, 1, ... as far as the files go (a hub source needs the model's layer count)."""
    names = []
    limit = model.n_layers if model is not None else 10_000
    for layer in range(limit):
        name = pattern.format(layer)
        try:
            fetch(name)
        except InputError:
            if model is not None or not names:
                raise
            break
        names.append(name)
    return names


def _resolve(fetch: Fetch, name: str) -> Path:
    if name.startswith("hf://"):
        parts = name.removeprefix("hf://").split("/")
        return _hub_file("/".join(parts[:2]), "/".join(parts[2:]), f"transcoder file '{name}'")
    path = Path(name).expanduser()
    return path if path.is_absolute() else fetch(name)


def _circuit_tracer_clt(fetch: Fetch, n_layers: int) -> list[CrossLayerWeights]:
    """circuit-tracer's CLT files: ``W_enc_<L>`` [d_sae, d_in] with ``b_enc_<L>``, ``b_dec_<L>`` and optional
    ``threshold_<L>`` in ``W_enc_<L>.safetensors``; ``W_dec_<L>`` [d_sae, n_layers - L, d_out] beside it."""
    layers = []
    for layer in range(n_layers):
        enc_path, dec_path = fetch(f"W_enc_{layer}.safetensors"), fetch(f"W_dec_{layer}.safetensors")
        enc, dec = read_safetensors(enc_path), read_safetensors(dec_path)
        for name, tensors, path in ((f"W_enc_{layer}", enc, enc_path), (f"b_enc_{layer}", enc, enc_path)):
            _require(tensors, name, path)
        _require(enc, f"b_dec_{layer}", enc_path)
        _require(dec, f"W_dec_{layer}", dec_path)
        if enc[f"W_enc_{layer}"].dim() != 2:
            raise InputError(f"'{enc_path}': W_enc_{layer} must be a matrix [d_sae, d_in]")
        layers.append(
            CrossLayerWeights(
                W_enc=enc[f"W_enc_{layer}"].float().t().contiguous(),
                b_enc=enc[f"b_enc_{layer}"].float(),
                W_dec=dec[f"W_dec_{layer}"].float(),
                b_dec=enc[f"b_dec_{layer}"].float(),
                threshold=enc[f"threshold_{layer}"].float() if f"threshold_{layer}" in enc else None,
            )
        )
    return layers


def _gemma_scope_2_clt_layer(path: Path, layer: int) -> CrossLayerWeights:
    """One layer of a Gemma Scope 2 CLT: ``w_enc [d_in, d_sae]``, ``b_enc``, ``b_dec [d_out]``, ``threshold``,
    ``w_dec [d_sae, n_layers, d_out]`` (targets before ``layer``, its place in the config's list, unused),
    optional ``affine_skip_connection [d_in, d_out]``."""
    raw = read_safetensors(path)
    for name in ("w_enc", "b_enc", "b_dec", "threshold", "w_dec"):
        _require(raw, name, path)
    if raw["w_dec"].dim() != 3:
        raise InputError(f"'{path}': w_dec must be [d_sae, n_layers, d_out] in a cross-layer transcoder")
    return CrossLayerWeights(
        W_enc=raw["w_enc"].float(),
        b_enc=raw["b_enc"].float(),
        W_dec=raw["w_dec"][:, layer:].float(),
        b_dec=raw["b_dec"].float(),
        threshold=raw["threshold"].float(),
        skip=raw["affine_skip_connection"].float() if "affine_skip_connection" in raw else None,
    )


def _require(tensors: dict[str, torch.Tensor], name: str, path: Path) -> None:
    if name not in tensors:
        raise InputError(f"'{path}' lacks {name} (it has {', '.join(sorted(tensors)) or 'nothing'})")


def _folded(weights: CrossLayerWeights, layer: int, model: Model | None) -> CrossLayerWeights:
    if model is None:
        raise InputError("this cross-layer transcoder reads ln2.hook_normalized: pass the model to fold its norms in")
    w_enc, b_enc, skip, b_dec = fold_norm(model, layer, weights.W_enc, weights.b_enc, weights.skip, weights.b_dec)
    return CrossLayerWeights(w_enc, b_enc, weights.W_dec, b_dec, weights.threshold, skip)


# -- where the files come from ------------------------------------------------------------------------------
def _local(folder: Path) -> Fetch:
    def fetch(name: str) -> Path:
        path = folder / name
        if name and not path.is_file():
            raise InputError(f"'{folder}' lacks {name}")
        return path

    return fetch


def _from_hub(spec: str, model: Model | None, hooks: tuple[str | None, str | None]) -> Any:
    parts = [part for part in spec.strip("/").split("/") if part]
    repo, prefix = "/".join(parts[:2]), "".join(f"{part}/" for part in parts[2:])
    what = f"transcoders '{spec}'"
    config = _read_yaml(_hub_file(repo, prefix + CIRCUIT_TRACER_CONFIG, what))
    if model is None and not config.get("transcoders"):
        raise InputError(f"{what}: pass the model, so glasslab knows how many layer files to fetch")

    def fetch(name: str) -> Path:
        return _hub_file(repo, prefix + name, what) if name else Path(spec)

    return _from_config(config, fetch, model, hooks)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml  # transformers depends on PyYAML

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"'{path}' is not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"'{path}' must hold a mapping (model_kind, feature_input_hook, ...)")
    return data
