"""An SAE's configuration, read from and written to SAELens's ``cfg.json``.

Two layouts exist in the wild: SAELens 6 nests where the SAE came from under ``metadata``; older
releases (SAELens <= 5, e.g. ``gpt2-small-res-jb``) keep ``hook_name``/``hook_point`` and friends at the
top level and mark TopK with ``activation_fn_str``. Both are read; the 6.x layout is written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InputError
from .config import NORMALIZATIONS, DictionaryConfig
from .hook_names import from_transformer_lens, to_transformer_lens
from .registry import architectures, dictionary_class

__all__ = ["ARCHITECTURES", "NORMALIZATIONS", "SAEConfig"]

ARCHITECTURES = architectures()  # the SAELens architectures glasslab reads (the registry may grow later)
_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16", "float64": "float64"}
# Metadata keys with a field of their own; everything else in ``metadata`` is kept in ``extra``.
_OWN_METADATA = (
    "model_name",
    "hook_name",
    "hook_head_index",
    "context_size",
    "prepend_bos",
    "dataset_path",
    "hook_name_out",
)
# Keys that describe the file layout rather than the SAE; read above, never carried along.
_LAYOUT_KEYS = (
    "metadata",
    "device",
    "hook_point",
    "activation_fn_str",
    "activation_fn_kwargs",
    "glasslab_hook",
    "glasslab_hook_out",
)


@dataclass
class SAEConfig(DictionaryConfig):
    """What an SAE is and where it was trained (the fields are ``DictionaryConfig``'s), read from and
    written to SAELens's ``cfg.json``."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SAEConfig:
        """Read either cfg.json layout; a one-line error names what is missing."""
        meta = dict(data.get("metadata") or {})
        merged = {**data, **meta}
        hook = merged.get("hook_name") or merged.get("hook_point")
        required = (("d_in", data.get("d_in")), ("d_sae", data.get("d_sae")), ("hook_name", hook))
        missing = [key for key, value in required if not value]
        if missing:
            raise InputError(f"SAE cfg.json lacks {', '.join(missing)}; is this an SAELens-layout SAE?")
        architecture = str(data.get("architecture") or "standard")
        kwargs = dict(data.get("activation_fn_kwargs") or {})
        if architecture == "standard" and data.get("activation_fn_str") == "topk":
            architecture = "topk"
        k = data.get("k", kwargs.get("k"))
        hook_out = merged.get("hook_name_out")
        known = {*_LAYOUT_KEYS, *cls.__dataclass_fields__}
        extra = {
            key: value for key, value in meta.items() if key not in (*_OWN_METADATA, *_LAYOUT_KEYS, "neuronpedia_id")
        }
        extra.update({key: value for key, value in data.items() if key not in known and key not in _OWN_METADATA})
        return cls(
            architecture=architecture,
            d_in=_whole(data["d_in"]),
            d_sae=_whole(data["d_sae"]),
            hook=from_transformer_lens(str(hook)),
            model_name=merged.get("model_name"),
            k=_whole(k) if k is not None else None,
            apply_b_dec_to_input=bool(data.get("apply_b_dec_to_input", True)),
            normalize_activations=str(data.get("normalize_activations") or "none"),
            rescale_acts_by_decoder_norm=bool(data.get("rescale_acts_by_decoder_norm", False)),
            reshape_activations=str(data.get("reshape_activations") or "none"),
            hook_head_index=merged.get("hook_head_index"),
            dtype=_dtype_name(str(data.get("dtype") or "float32")),
            context_size=merged.get("context_size"),
            prepend_bos=bool(merged.get("prepend_bos", True)),
            dataset_path=merged.get("dataset_path"),
            neuronpedia_id=merged.get("neuronpedia_id"),
            extra=extra,
            hook_out=from_transformer_lens(str(hook_out)) if hook_out else None,
            d_out=_whole(data["d_out"]) if data.get("d_out") is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        """SAELens 6 layout (hook in TransformerLens's vocabulary), plus glasslab's canonical hook name."""
        own = asdict(self)
        metadata = {
            "model_name": self.model_name,
            "hook_name": to_transformer_lens(self.hook),
            "hook_head_index": self.hook_head_index,
            "context_size": self.context_size,
            "prepend_bos": self.prepend_bos,
            "dataset_path": self.dataset_path,
            "neuronpedia_id": self.neuronpedia_id,
            "glasslab_hook": self.hook,
            "hook_name_out": to_transformer_lens(self.hook_out) if self.hook_out else None,
            "glasslab_hook_out": self.hook_out,
            **self.extra,
        }
        data = {
            "architecture": self.architecture,
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "dtype": self.dtype,
            "device": "cpu",
            "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "normalize_activations": self.normalize_activations,
            "reshape_activations": self.reshape_activations,
            "metadata": {key: value for key, value in metadata.items() if value is not None},
        }
        if self.d_out is not None:
            data["d_out"] = self.d_out
        if dictionary_class(self.architecture).uses_k:
            data["k"] = own["k"]
            data["rescale_acts_by_decoder_norm"] = self.rescale_acts_by_decoder_norm
        return data


def _dtype_name(text: str) -> str:
    name = text.removeprefix("torch.")
    if name not in _DTYPES:
        raise InputError(f"SAE dtype '{text}' is not supported; use float32, float16 or bfloat16")
    return _DTYPES[name]


def _whole(value: Any) -> Any:
    """A JSON width as an int: 16384 and 16384.0 are the same width; anything else (1.5, "abc", true) is
    left as it is for ``__post_init__`` to refuse in one line instead of being truncated or crashing."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
