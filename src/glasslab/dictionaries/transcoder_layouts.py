"""Per-layer transcoders in the layouts the field publishes, read into glasslab's ``Transcoder`` so they read
``blocks.L.mlp.in`` (the MLP's real input) and predict ``blocks.L.mlp_out`` exactly.

Layouts (``docs/transcoders.md`` has the table):

- SAELens: a folder with ``cfg.json`` (architecture ``transcoder``/``skip_transcoder``/``jumprelu_transcoder``/
  ``jumprelu_skip_transcoder``, ``hook_name``, ``hook_name_out``) and ``sae_weights.safetensors``;
- circuit-tracer: one ``.safetensors`` per layer with ``W_enc [d_sae, d_in]`` (``F.linear``'s orientation),
  ``W_dec [d_sae, d_out]``, ``b_enc``, ``b_dec``, optional ``activation_function.threshold`` (JumpReLU) and
  ``W_skip [d_out, d_in]``;
- Gemma Scope: ``params.npz`` (Gemma 2, ``W_enc [d_in, d_sae]``) or Gemma Scope 2's ``params.safetensors``
  (``w_enc [d_in, d_sae]``, ``w_dec [d_sae, d_out]``, ``b_enc``, ``b_dec``, ``threshold``, optional
  ``affine_skip_connection [d_in, d_out]``): JumpReLU.

Where a file reads its input matters. TransformerLens's ``ln2.hook_normalized`` is taken before the norm's
weight and bias (``x / scale``; fold_ln or not), so there the model's norm is folded into the encoder and
the skip connection: ``pre = ((mlp_in - b) / w) W_enc + b_enc``. circuit-tracer's ``mlp.hook_in`` and Gemma
Scope 2's ``pre_feedforward_layernorm.output`` are the MLP's real input (circuit-tracer runs
TransformerLens with ``fold_ln=False``), read as they are. ``hook_resid_mid`` (before the norm) becomes
glasslab's ``blocks.L.resid_mid``: no linear map turns it into ``mlp.in``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import InputError
from ..model.model import Model
from .files import CONFIG_FILE, check_tensors, load_dictionary_folder
from .hub import _read_params
from .registry import dictionary_class
from .sae_config import SAEConfig
from .transcoder import Transcoder

# Input hooks by what they hold: the MLP's real input, TransformerLens's normalised input before the norm's
# weight and bias, or the residual stream before the norm.
_MLP_IN = ("mlp.in", "mlp.hook_in", "pre_feedforward_layernorm.output", "post_attention_layernorm.output")
_NORMALISED = ("ln2.hook_normalized",)
_RESID_MID = ("hook_resid_mid", "resid_mid", "hook_mlp_in")
_OUTPUTS = ("hook_mlp_out", "mlp_out", "post_feedforward_layernorm.output", "mlp.output")
_MLP_MODULE_OUT = ("mlp.hook_out",)  # the MLP module's output: mlp_out unless a post-norm follows it


def input_site(hook: str, hf_hook: str | None = None) -> str:
    """``mlp.in``, ``normalised`` or ``resid_mid``: what a published input hook name holds. ``hf_hook`` (Gemma
    Scope 2's ``hf_hook_name``) wins over SAELens's label, which calls Gemma 3's MLP input ``hook_mlp_in``."""
    for name in (hf_hook, hook):
        if not name:
            continue
        for site, names in (("mlp.in", _MLP_IN), ("normalised", _NORMALISED), ("resid_mid", _RESID_MID)):
            if any(name == known or name.endswith("." + known) for known in names):
                return site
    raise InputError(
        f"a transcoder reading '{hook}' cannot be placed in glasslab (it reads the MLP's input: ln2.hook_normalized, "
        "mlp.hook_in or hook_resid_mid)"
    )


def output_hook(hook: str, layer: int, model: Model | None) -> str:
    """glasslab's name for a published output hook: ``blocks.L.mlp_out`` (Gemma's post-norm included)."""
    if any(hook == known or hook.endswith("." + known) for known in _OUTPUTS):
        return f"blocks.{layer}.mlp_out"
    if any(hook.endswith(known) for known in _MLP_MODULE_OUT):
        if model is not None and getattr(model.arch, "post_mlp_norm", None):
            raise InputError(
                f"this transcoder predicts the MLP's output before {model.name}'s post-MLP norm ('{hook}'), "
                "which glasslab has no hook for; use transcoders that predict hook_mlp_out"
            )
        return f"blocks.{layer}.mlp_out"
    raise InputError(f"a transcoder writing '{hook}' does not predict an MLP's output (hook_mlp_out)")


def site_hook(site: str, layer: int) -> str:
    return f"blocks.{layer}.resid_mid" if site == "resid_mid" else f"blocks.{layer}.mlp.in"


def layer_of(*names: str | None) -> int:
    """The layer a published name speaks of (``blocks.8.…``, ``layer_8``, ``layer-8``)."""
    for name in names:
        match = re.search(r"(?:blocks\.|layer[_-]|layers\.)(\d+)", name or "")
        if match:
            return int(match.group(1))
    raise InputError(f"cannot tell which layer '{names[0]}' is for; name it layer_N")


# -- building and folding ---------------------------------------------------------------------------------
def transcoder_from_tensors(
    tensors: dict[str, torch.Tensor],
    *,
    layer: int,
    site: str,
    hook_out: str,
    source: str,
    model: Model | None,
    model_name: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Transcoder:
    """A Transcoder from tensors in SAELens's orientation (``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_out]``,
    ``W_skip [d_out, d_in]``, optional ``threshold``); checked by name and shape; a ``normalised`` input has
    the model's norm folded in."""
    for name in ("W_enc", "W_dec"):
        if name not in tensors or tensors[name].dim() != 2:
            have = list(tensors[name].shape) if name in tensors else "missing"
            raise InputError(f"'{source}': {name} must be a matrix, got {have}; is this a transcoder file?")
    (d_in, d_sae), d_out = tensors["W_enc"].shape, tensors["W_dec"].shape[1]
    architecture = ("jumprelu_" if "threshold" in tensors else "") + ("skip_" if "W_skip" in tensors else "")
    config = SAEConfig(
        architecture=architecture + "transcoder",
        d_in=int(d_in),
        d_sae=int(d_sae),
        hook=site_hook(site, layer),
        hook_out=hook_out,
        d_out=int(d_out),
        model_name=model_name,
        apply_b_dec_to_input=False,
    )
    transcoder = dictionary_class(config.architecture)(config, dtype=torch.float32)
    check_tensors(tensors, transcoder, Path(source))
    with torch.no_grad():
        for name, param in transcoder.named_parameters():
            param.copy_(tensors[name].float())
    if site == "normalised":
        fold_input_norm(transcoder, _model_for(model, source), layer)
    return transcoder.to(dtype)  # type: ignore[return-value]


def _model_for(model: Model | None, source: str) -> Model:
    if model is None:
        raise InputError(
            f"'{source}' reads TransformerLens's ln2.hook_normalized (before the norm's weight and bias): pass the "
            "model so its norm can be folded in"
        )
    return model


def fold_input_norm(transcoder: Transcoder, model: Model, layer: int) -> None:
    """Move a transcoder reading ``n = (mlp_in - b) / w`` onto ``mlp_in`` itself (``fold_norm``)."""
    skip = transcoder.W_skip.t() if transcoder.has_skip else None
    w_enc, b_enc, skip, b_dec = fold_norm(model, layer, transcoder.W_enc, transcoder.b_enc, skip, transcoder.b_dec)
    with torch.no_grad():
        transcoder.W_enc.copy_(w_enc)
        transcoder.b_enc.copy_(b_enc)
        transcoder.b_dec.copy_(b_dec)
        if skip is not None:
            transcoder.W_skip.copy_(skip.t())
    transcoder.cfg.extra["input_norm_folded"] = "ln2.hook_normalized"


def fold_norm(
    model: Model,
    layer: int,
    w_enc: torch.Tensor,
    b_enc: torch.Tensor,
    skip: torch.Tensor | None,
    b_dec: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(W_enc, b_enc, skip, b_dec) reading ``mlp_in`` for ones reading ``n = (mlp_in - b) / w`` (layer
    ``layer``'s MLP norm): ``W_enc / w`` per input row, ``b_enc - (b / w) W_enc``; the skip ``[d_in, d_out]``
    likewise, its shift moved into ``b_dec``. Computed in float64, returned in float32."""
    norm = model.weights.mlp_norm(layer)
    weight = norm.weight.double()
    if bool((weight == 0).any()):
        raise InputError(
            f"{model.name}'s MLP norm at layer {layer} has zero weights: a transcoder reading the normalised input "
            "cannot be moved onto mlp.in there"
        )
    shift = torch.zeros_like(weight) if norm.bias is None else norm.bias.double() / weight
    b_enc = (b_enc.double() - shift @ w_enc.double()).float()
    w_enc = (w_enc.double() / weight[:, None]).float()
    if skip is not None:
        b_dec = (b_dec.double() - shift @ skip.double()).float()
        skip = (skip.double() / weight[:, None]).float()
    return w_enc, b_enc, skip, b_dec


# -- the layouts --------------------------------------------------------------------------------------------
def read_saelens_transcoder(
    folder: Path, model: Model | None, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> Transcoder:
    """A SAELens-layout transcoder folder; glasslab's own (``glasslab_hook`` in its metadata) load as saved."""
    data = _read_json(folder / CONFIG_FILE)
    meta = dict(data.get("metadata") or {})
    if meta.get("glasslab_hook"):
        return load_dictionary_folder(folder, dtype=dtype, device=device, kind=Transcoder)  # type: ignore[return-value]
    merged = {**data, **meta}
    hook_in = str(merged.get("hook_name") or merged.get("hook_point") or "")
    hook_out = str(merged.get("hook_name_out") or "")
    if not hook_in or not hook_out:
        raise InputError(f"'{folder / CONFIG_FILE}' names no hook_name and hook_name_out; is it a transcoder?")
    layer = layer_of(hook_in, hook_out)
    site = input_site(hook_in, merged.get("hf_hook_name"))
    out = output_hook(str(merged.get("hf_hook_name_out") or hook_out), layer, model)
    data = {k: v for k, v in data.items() if k not in ("hook_name", "hook_point", "hook_name_out")}
    data["metadata"] = {**meta, "hook_name": site_hook(site, layer), "hook_name_out": out}
    config = SAEConfig.from_json(data)
    if not issubclass(dictionary_class(config.architecture), Transcoder):
        raise InputError(f"'{folder}' holds a '{config.architecture}' dictionary, not a transcoder")
    transcoder = load_dictionary_folder(folder, dtype=torch.float32, kind=Transcoder, config=config)
    if site == "normalised":
        fold_input_norm(transcoder, _model_for(model, str(folder)), layer)  # type: ignore[arg-type]
    return transcoder.to(device=device, dtype=dtype)  # type: ignore[return-value]


def read_circuit_tracer_layer(
    path: Path, layer: int, *, site: str, hook_out: str, model: Model | None, model_name: str | None = None
) -> Transcoder:
    """One layer of circuit-tracer's per-layer set (``load_relu_transcoder``'s file)."""
    raw = read_safetensors(path)
    if "w_enc" in raw:  # a Gemma Scope 2 file listed in a circuit-tracer config
        return read_gemma_scope_transcoder(path, layer, model=model, model_name=model_name, site=site)
    tensors = {name: value for name, value in raw.items() if name not in ("W_enc", "activation_function.threshold")}
    if "W_enc" in raw:
        tensors["W_enc"] = raw["W_enc"].t()
    if "activation_function.threshold" in raw:
        tensors["threshold"] = raw["activation_function.threshold"]
    return transcoder_from_tensors(
        tensors, layer=layer, site=site, hook_out=hook_out, source=str(path), model=model, model_name=model_name
    )


def read_gemma_scope_transcoder(
    path: Path, layer: int, *, model: Model | None, model_name: str | None = None, site: str | None = None
) -> Transcoder:
    """Gemma Scope's raw JumpReLU transcoder: ``params.npz`` (Gemma 2: reads ln2.hook_normalized, as SAELens
    and circuit-tracer place it) or Gemma Scope 2's ``params.safetensors`` (reads the MLP's input)."""
    raw = {name.lower(): value for name, value in _read_params(path).items()}
    names = {"w_enc": "W_enc", "w_dec": "W_dec", "b_enc": "b_enc", "b_dec": "b_dec", "threshold": "threshold"}
    tensors = {ours: raw[theirs] for theirs, ours in names.items() if theirs in raw}
    if "w_dec" in raw and raw["w_dec"].dim() == 3:
        raise InputError(f"'{path}' is one layer of a cross-layer transcoder; load the whole set (load_transcoders)")
    if "affine_skip_connection" in raw:
        tensors["W_skip"] = raw["affine_skip_connection"].t()  # stored [d_in, d_out]
    if "threshold" not in tensors:
        raise InputError(f"'{path}' lacks threshold; is it a Gemma Scope JumpReLU transcoder?")
    site = site or ("normalised" if path.suffix == ".npz" else _gemma_scope_2_site(path))
    return transcoder_from_tensors(
        tensors,
        layer=layer,
        site=site,
        hook_out=f"blocks.{layer}.mlp_out",
        source=str(path),
        model=model,
        model_name=model_name,
    )


def _gemma_scope_2_site(path: Path) -> str:
    """Gemma Scope 2 folders may carry a ``config.json`` naming the HF hook (``hf_hook_point_in``)."""
    beside = path.parent / "config.json"
    hook = _read_json(beside).get("hf_hook_point_in") if beside.is_file() else None
    return input_site(str(hook)) if hook else "mlp.in"


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(f"transcoder file '{path}' does not exist")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as exc:
        raise InputError(f"'{path}' is not a readable safetensors file ({exc}); download it again") from None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"no {path.name} in '{path.parent}'")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"'{path}' is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"'{path}' must hold a JSON object")
    return data
