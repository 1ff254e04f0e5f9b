"""Canonical weights: one name, shape and orientation per weight, in every family.

Hook names give every activation one name; this module does the same for weights, so no method works
out a family's orientation or fused layout again. Every matrix is oriented for row vectors: a
projection maps ``x`` [..., d_in] to ``x @ W + b``. The family's ``Architecture`` entry declares, as
data, where each weight lives and how it is laid out (``out_proj_layout``: Linear ``[out, in]`` or
GPT-2's Conv1D ``[in, out]``; ``qkv_layout``: separate, fused or fused per head); one reader here turns
that into the shapes of ``SHAPES``. Reads are views of the parameters (no copy), except ``W_E`` in
families whose embedding scales its output (Gemma) and ``expand=True``.

Writers use the same views: ``add_`` changes a parameter by a delta given in canonical orientation, and
``to_module_layout`` / ``from_module_layout`` translate between canonical tensors and the parameter's own
layout (edits store deltas in the latter). Norms are read as ``NormParams`` (effective weight, bias, eps).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ..errors import InputError
from .norms import NormParams, norm_params
from .offload import is_offloaded, onloaded

if TYPE_CHECKING:
    from .model import Model

# name -> shape; K/V (and their biases) have kv_head heads, fewer than head in grouped-query models.
SHAPES: dict[str, str] = {
    "W_E": "[vocab, d_model]",
    "W_pos": "[n_ctx, d_model]",
    "W_U": "[d_model, vocab]",
    "b_U": "[vocab]",
    "W_Q": "[head, d_model, d_head]",
    "W_K": "[kv_head, d_model, d_head]",
    "W_V": "[kv_head, d_model, d_head]",
    "W_O": "[head, d_head, d_model]",
    "b_Q": "[head, d_head]",
    "b_K": "[kv_head, d_head]",
    "b_V": "[kv_head, d_head]",
    "b_O": "[d_model]",
    "W_in": "[d_model, d_mlp]",
    "W_gate": "[d_model, d_mlp]",
    "W_out": "[d_mlp, d_model]",
    "b_in": "[d_mlp]",
    "b_gate": "[d_mlp]",
    "b_out": "[d_model]",
}
GLOBAL_WEIGHTS = ("W_E", "W_pos", "W_U", "b_U")
NORMS: dict[str, str] = {
    "attn_norm": "[d_model]  the norm attention reads the residual stream through",
    "mlp_norm": "[d_model]  the norm the MLP reads the residual stream through",
    "post_attn_norm": "[d_model]  post-norm of the attention output (Gemma 2/3)",
    "post_mlp_norm": "[d_model]  post-norm of the MLP output (Gemma 2/3)",
    "q_norm": "[d_head]  per-head query norm (Qwen 3, Gemma 3)",
    "k_norm": "[d_head]  per-head key norm (Qwen 3, Gemma 3)",
    "final_norm": "[d_model]  the final norm, before the unembedding",
}
_QKV = {"Q": 0, "K": 1, "V": 2}
_PER_HEAD = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V")
_View = Callable[[torch.Tensor], torch.Tensor]


class Weights:
    """A model's weights by canonical name (``model.weights``); see the module doc and docs/hooks.md."""

    def __init__(self, model: Model) -> None:
        self._model = model
        self._arch = model.arch

    # -- embedding and unembedding ----------------------------------------------------------------------
    def W_E(self) -> torch.Tensor:
        """[vocab, d_model]: row ``t`` is the embedding module's output for token ``t`` (the ``embed`` hook),
        so Gemma's ``sqrt(d_model)`` scale is included."""
        return self.read("W_E")

    def W_pos(self) -> torch.Tensor:
        """[n_ctx, d_model]: learned position embeddings (GPT-2 only)."""
        return self.read("W_pos")

    def W_U(self) -> torch.Tensor:
        """[d_model, vocab]: ``logits = ln_final @ W_U + b_U`` (before any soft-cap)."""
        return self.read("W_U")

    def b_U(self) -> torch.Tensor:
        return self.read("b_U")

    # -- attention ----------------------------------------------------------------------------------
    def W_Q(self, layer: int, head: int | None = None) -> torch.Tensor:
        """[head, d_model, d_head] (or [d_model, d_head] for one head)."""
        return self.read("W_Q", layer, head)

    def W_K(self, layer: int, head: int | None = None, *, expand: bool = False) -> torch.Tensor:
        """[kv_head, d_model, d_head]; ``expand=True``: [head, ...], each query head's key weights."""
        return self.read("W_K", layer, head, expand=expand)

    def W_V(self, layer: int, head: int | None = None, *, expand: bool = False) -> torch.Tensor:
        """[kv_head, d_model, d_head]; ``expand=True``: [head, ...], each query head's value weights."""
        return self.read("W_V", layer, head, expand=expand)

    def W_O(self, layer: int, head: int | None = None) -> torch.Tensor:
        """[head, d_head, d_model]: head ``h`` writes ``z[h] @ W_O[h]`` (before any post-norm)."""
        return self.read("W_O", layer, head)

    def b_Q(self, layer: int, head: int | None = None) -> torch.Tensor:
        return self.read("b_Q", layer, head)

    def b_K(self, layer: int, head: int | None = None, *, expand: bool = False) -> torch.Tensor:
        return self.read("b_K", layer, head, expand=expand)

    def b_V(self, layer: int, head: int | None = None, *, expand: bool = False) -> torch.Tensor:
        return self.read("b_V", layer, head, expand=expand)

    def b_O(self, layer: int) -> torch.Tensor:
        return self.read("b_O", layer)

    # -- MLP ----------------------------------------------------------------------------------------
    def W_in(self, layer: int) -> torch.Tensor:
        """[d_model, d_mlp]: the input ("up") projection; gated MLPs compute ``act(x W_gate) * (x W_in)``."""
        return self.read("W_in", layer)

    def W_gate(self, layer: int) -> torch.Tensor:
        """[d_model, d_mlp]: the gate projection of gated MLPs (Llama, Gemma, ...)."""
        return self.read("W_gate", layer)

    def W_out(self, layer: int) -> torch.Tensor:
        """[d_mlp, d_model]: row ``n`` is what neuron ``n`` writes per unit of ``mlp.post``."""
        return self.read("W_out", layer)

    def b_in(self, layer: int) -> torch.Tensor:
        return self.read("b_in", layer)

    def b_gate(self, layer: int) -> torch.Tensor:
        return self.read("b_gate", layer)

    def b_out(self, layer: int) -> torch.Tensor:
        return self.read("b_out", layer)

    # -- norms --------------------------------------------------------------------------------------
    def attn_norm(self, layer: int) -> NormParams:
        return self.norm("attn_norm", layer)

    def mlp_norm(self, layer: int) -> NormParams:
        return self.norm("mlp_norm", layer)

    def post_attn_norm(self, layer: int) -> NormParams:
        return self.norm("post_attn_norm", layer)

    def post_mlp_norm(self, layer: int) -> NormParams:
        return self.norm("post_mlp_norm", layer)

    def q_norm(self, layer: int) -> NormParams:
        return self.norm("q_norm", layer)

    def k_norm(self, layer: int) -> NormParams:
        return self.norm("k_norm", layer)

    def final_norm(self) -> NormParams:
        return self.norm("final_norm")

    def norm(self, name: str, layer: int | None = None) -> NormParams:
        """A norm by name (``NORMS``) as its effective weight, bias and eps (Gemma's ``1 + w`` included)."""
        if name not in NORMS:
            raise InputError(_unknown(name, NORMS))
        if name == "final_norm":
            self._check_global(name, layer)
            return norm_params(self._model.module(self._arch.final_norm))
        path = getattr(self._arch, name)
        if path is None:
            raise InputError(f"{self._model.name} ({self._arch.name}) has no {name}")
        return norm_params(self._model.block_module(self._check_layer(name, layer), path))

    # -- by name ------------------------------------------------------------------------------------
    def read(
        self, name: str, layer: int | None = None, head: int | None = None, *, expand: bool = False
    ) -> torch.Tensor:
        """A weight by name (``SHAPES``); ``head`` picks one head, ``expand`` repeats K/V heads per query head."""
        parameter, view = self._locate(name, layer)
        if parameter is None:
            raise InputError(self._absent(name))
        weight = view(parameter)
        scale = self._embed_scale() if name == "W_E" else None
        if scale is not None:  # as the module computes it
            weight = weight * scale.to(weight.dtype)
        if expand:
            if name not in ("W_K", "W_V", "b_K", "b_V"):
                raise InputError(f"expand=True applies to W_K, W_V, b_K and b_V, not {name}")
            group = self._model.n_heads // self._model.n_kv_heads
            weight = weight.repeat_interleave(group, dim=0) if group > 1 else weight
        if head is None:
            return weight
        if name not in _PER_HEAD:
            raise InputError(f"{name} has no heads; leave head out")
        count = weight.shape[0]
        if not (isinstance(head, int) and 0 <= head < count):
            raise InputError(f"head {head} is out of range for {name} (valid: 0..{count - 1})")
        return weight[head]

    def get(self, name: str, layer: int | None = None) -> torch.Tensor | None:
        """Like ``read``, but None where this model lacks the weight (a bias, a gate): for optional terms."""
        parameter, _ = self._locate(name, layer)
        return None if parameter is None else self.read(name, layer)

    def has(self, name: str, layer: int = 0) -> bool:
        return self._locate(name, None if name in GLOBAL_WEIGHTS else layer)[0] is not None

    def names(self) -> list[str]:
        """The canonical weights this model has (biases and gates vary by family and config)."""
        return [name for name in SHAPES if self.has(name)]

    # -- writing ------------------------------------------------------------------------------------
    def parameter(self, name: str, layer: int | None = None) -> torch.nn.Parameter:
        """The module parameter holding ``name`` (for fused q/k/v, the whole fused matrix), to write through:
        refused where accelerate offloaded it, since a write there would be lost when the module next runs."""
        parameter, _ = self._locate(name, layer)
        if parameter is None:
            raise InputError(self._absent(name))
        if is_offloaded(parameter):
            raise InputError(
                f"{name} is offloaded (device_map put it on the CPU or disk), so it cannot be edited in place; "
                "load the model without offload to edit it"
            )
        return parameter

    def from_module_layout(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """The canonical view of ``tensor``, a tensor shaped like ``name``'s parameter (e.g. a stored delta)."""
        self._check_writable(name)
        return self._locate(name, self._default_layer(name, None))[1](tensor)

    def to_module_layout(self, name: str, canonical: torch.Tensor, *, layer: int | None = None) -> torch.Tensor:
        """``canonical`` (shaped as ``SHAPES[name]``) in the parameter's own layout and shape, keeping
        ``canonical``'s dtype; zeros in the parts of a fused parameter that belong to other weights."""
        parameter = self.parameter(name, self._default_layer(name, layer))
        out = torch.zeros(parameter.shape, dtype=canonical.dtype, device=canonical.device)
        target = self.from_module_layout(name, out)
        if target.shape != canonical.shape:
            raise InputError(f"{name} is {tuple(target.shape)} here, the tensor is {tuple(canonical.shape)}")
        target.copy_(canonical)
        return out

    def add_(self, name: str, delta: torch.Tensor, *, layer: int | None = None) -> None:
        """Change the model in place so that ``name`` becomes ``name + delta`` (canonical orientation)."""
        self._check_writable(name)
        self.parameter(name, layer)  # refuses an offloaded weight
        target = self.read(name, layer)
        if target.shape != delta.shape:
            raise InputError(f"{name} is {tuple(target.shape)} here, the delta is {tuple(delta.shape)}")
        with torch.no_grad():
            target.add_(delta.to(device=target.device, dtype=target.dtype))

    # -- where each weight lives ----------------------------------------------------------------------
    def _locate(self, name: str, layer: int | None) -> tuple[torch.nn.Parameter | None, _View]:
        """The parameter holding ``name`` (None if this model lacks it) and the view that makes it canonical;
        for a parameter accelerate offloaded (on ``meta``), the view reads its value from the offload first."""
        parameter, view, module = self._find(name, layer)
        if not is_offloaded(parameter):
            return parameter, view
        kind = "weight" if name.startswith("W") else "bias"
        return parameter, lambda tensor: view(onloaded(module, kind, tensor))

    def _find(self, name: str, layer: int | None) -> tuple[torch.nn.Parameter | None, _View, torch.nn.Module | None]:
        if name not in SHAPES:
            raise InputError(_unknown(name, SHAPES))
        arch, model = self._arch, self._model
        if name in GLOBAL_WEIGHTS:
            self._check_global(name, layer)
            path = {"W_E": arch.embed, "W_pos": arch.pos_embed, "W_U": arch.unembed, "b_U": arch.unembed}[name]
            if path is None:
                return None, _identity, None
            module = model.module(path)
            kind = "weight" if name.startswith("W") else "bias"
            return _param(module, kind), (lambda w: w.T) if name == "W_U" else _identity, module
        layer = self._check_layer(name, layer)
        kind = "weight" if name.startswith("W") else "bias"
        if name[2:] in _QKV:
            return self._qkv(name[2:], layer, kind)
        path = {
            "O": arch.attn_out_proj,
            "in": arch.mlp_in_proj,
            "gate": arch.mlp_gate_proj,
            "out": arch.mlp_out_proj,
        }[name[2:]]
        if path is None:
            return None, _identity, None
        module = model.block_module(layer, path)
        parameter = _param(module, kind)
        if kind == "bias":
            return parameter, _identity, module
        if name == "W_O":
            return parameter, lambda w: self._input_major(w).unflatten(0, (model.n_heads, model.d_head)), module
        return parameter, self._input_major, module

    def _qkv(self, which: str, layer: int, kind: str) -> tuple[torch.nn.Parameter | None, _View, torch.nn.Module]:
        """Q, K or V from separate or fused projections: the output dimension split into [heads, d_head]."""
        arch, model = self._arch, self._model
        index, dh = _QKV[which], model.d_head
        heads = model.n_heads if which == "Q" else model.n_kv_heads
        if arch.qkv_layout == "separate":
            module = model.block_module(layer, arch.qkv_proj[index])

            def part(t: torch.Tensor) -> torch.Tensor:
                return t.unflatten(-1, (heads, dh))
        elif arch.qkv_layout == "fused":  # [q | k | v], each head-major
            module = model.block_module(layer, arch.qkv_proj[0])
            start = (0, model.n_heads, model.n_heads + model.n_kv_heads)[index] * dh

            def part(t: torch.Tensor) -> torch.Tensor:
                return t.narrow(-1, start, heads * dh).unflatten(-1, (heads, dh))
        else:  # fused_per_head: [head, (q | k | v), d_head]
            module = model.block_module(layer, arch.qkv_proj[0])

            def part(t: torch.Tensor) -> torch.Tensor:
                return t.unflatten(-1, (model.n_heads, 3, dh)).select(-2, index)

        if kind == "bias":
            return _param(module, "bias"), part, module
        return _param(module, "weight"), lambda w: part(self._input_major(w)).movedim(-2, 0), module

    def _input_major(self, weight: torch.Tensor) -> torch.Tensor:
        """[d_in, d_out] from a block projection's weight, whatever the family stores."""
        return weight if self._arch.out_proj_layout == "conv1d" else weight.T

    def _embed_scale(self) -> torch.Tensor | None:
        scale = getattr(self._model.module(self._arch.embed), "embed_scale", None)
        return None if scale is None else torch.as_tensor(scale)

    # -- checks -------------------------------------------------------------------------------------
    def _check_layer(self, name: str, layer: int | None) -> int:
        n = self._model.n_layers
        if layer is None:
            raise InputError(f"{name} is per layer; give a layer in 0..{n - 1}")
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n:
            raise InputError(f"layer {layer} is out of range (valid: 0..{n - 1})")
        return layer

    @staticmethod
    def _check_global(name: str, layer: int | None) -> None:
        if layer is not None:
            raise InputError(f"{name} belongs to the whole model, not a layer; leave the layer out")

    @staticmethod
    def _default_layer(name: str, layer: int | None) -> int | None:
        """Layouts are the same in every layer: layer 0 stands for all when none is given."""
        return None if name in GLOBAL_WEIGHTS else (0 if layer is None else layer)

    def _check_writable(self, name: str) -> None:
        if name == "W_E" and self._embed_scale() is not None:
            raise InputError(
                "W_E includes this model's embedding scale, so it cannot be written through; change the "
                "embedding module's weight directly"
            )

    def _absent(self, name: str) -> str:
        model, arch = self._model, self._arch
        if name in ("W_gate", "b_gate") and arch.mlp_gate_proj is None:
            reason = "its MLP is not gated"
        elif name == "W_pos":
            reason = "it has no learned position embeddings"
        else:
            reason = "its projection has no bias"
        return f"{model.name} ({arch.name}) has no {name}: {reason} (model.weights.names() lists the ones it has)"


def _param(module: torch.nn.Module, kind: str) -> torch.nn.Parameter | None:
    value = getattr(module, kind, None)
    return value if isinstance(value, torch.Tensor) else None


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _unknown(name: str, known: dict[str, str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown weight '{name}'{hint} (known: {', '.join(known)})"
