"""What a dictionary is: its architecture, widths, where it reads in the model and how inputs are normalised.

``sae_config.SAEConfig`` adds reading and writing SAELens's ``cfg.json`` to these fields; this module
needs only the fields, so it does not depend on any file layout.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .registry import dictionary_class

NORMALIZATIONS = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm")


@dataclass
class DictionaryConfig:
    """A dictionary's shape and reading conventions. ``hook`` is glasslab's canonical hook name; a
    transcoder also names the hook it predicts (``hook_out``) and its width (``d_out``); both None for an
    autoencoder, whose output is its input."""

    architecture: str
    d_in: int
    d_sae: int
    hook: str
    model_name: str | None = None
    k: int | None = None  # active features per token (topk, batchtopk without a threshold)
    apply_b_dec_to_input: bool = True
    normalize_activations: str = "none"
    rescale_acts_by_decoder_norm: bool = False  # topk: rank features by activation x decoder norm
    reshape_activations: str = "none"  # "hook_z": attn.z heads flattened to [n_heads * d_head]
    hook_head_index: int | None = None  # the dictionary reads one head of attn.z
    dtype: str = "float32"
    context_size: int | None = None
    prepend_bos: bool = True
    dataset_path: str | None = None
    neuronpedia_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    hook_out: str | None = None  # transcoders: the hook the dictionary predicts
    d_out: int | None = None  # transcoders: the output width (None: d_in)

    @property
    def out_width(self) -> int:
        """The width of what the dictionary rebuilds or predicts."""
        return self.d_in if self.d_out is None else self.d_out

    def __post_init__(self) -> None:
        kind = dictionary_class(self.architecture)
        if self.normalize_activations not in NORMALIZATIONS:
            raise InputError(
                f"SAE normalize_activations '{self.normalize_activations}' is not supported; "
                f"glasslab reads {', '.join(NORMALIZATIONS)}"
            )
        for name in ("d_in", "d_sae", "k", "d_out"):
            value = getattr(self, name)
            if name in ("k", "d_out") and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
                raise InputError(f"SAE {name} must be a positive whole number; got {value!r}")
            setattr(self, name, int(value))
        kind.check_config(self)
