"""Where each model family keeps its parts, as data.

glasslab never reimplements a model: it hooks the Hugging Face modules in place. An entry says which
module paths hold the embedding, the blocks, the attention and MLP projections and the norms, how the
projections lay out their weights (``model/weights.py`` reads them into canonical shapes from this alone),
and the few facts that change how residual-stream quantities are read (parallel residual, post-norms).
Adding a family is one ``Architecture(...)`` entry in ``ARCHITECTURES``; see docs/adding-a-family.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import UnsupportedModelError


@dataclass(frozen=True)
class Architecture:
    """Module paths (dotted, relative to the causal-LM module or to one block) and residual-stream facts."""

    name: str
    embed: str  # token embedding module; its output is the `embed` hook
    blocks: str  # ModuleList of decoder blocks
    final_norm: str
    unembed: str
    attn: str  # per block: the attention module (calls the AttentionInterface)
    mlp: str  # per block: the MLP module
    attn_out_proj: str  # per block: attention output projection (maps z to the residual width)
    mlp_out_proj: str  # per block: MLP output projection; its input is `mlp.post` (the neurons)
    # How every projection in the blocks stores its weight: nn.Linear [out, in]; GPT-2's Conv1D [in, out]
    # (the name is historical: it covers the q/k/v and MLP input projections too).
    out_proj_layout: Literal["linear", "conv1d"] = "linear"
    # Per block: the query/key/value projections. "separate": three modules (q, k, v); "fused": one module
    # whose output is [q | k | v], each head-major (GPT-2's c_attn); "fused_per_head": one module whose
    # output is head-major with each head's [q | k | v] together (GPT-NeoX's query_key_value).
    qkv_proj: tuple[str, ...] = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
    qkv_layout: Literal["separate", "fused", "fused_per_head"] = "separate"
    q_norm: str | None = None  # per block: per-head query / key norms (Qwen 3, Gemma 3)
    k_norm: str | None = None
    mlp_in_proj: str = "mlp.up_proj"  # per block: MLP input projection (the "up" projection when gated)
    mlp_gate_proj: str | None = "mlp.gate_proj"  # None when the MLP is not gated
    pos_embed: str | None = None  # learned absolute position embeddings (GPT-2)
    attn_norm: str = "input_layernorm"  # per block: the norm attention reads the residual stream through
    mlp_norm: str = "post_attention_layernorm"  # per block: the norm the MLP reads through (Llama's name)
    # Post-norm families (Gemma 2/3) normalise each sublayer's output before adding it to the residual.
    post_attn_norm: str | None = None
    post_mlp_norm: str | None = None
    # Parallel residual (GPT-NeoX/Pythia, GPT-J): attention and MLP both read resid_pre, so there is no
    # resid_mid. ``parallel_residual_attr`` names the config flag, ``parallel_residual`` is the fixed answer.
    parallel_residual: bool = False
    parallel_residual_attr: str | None = None

    def __post_init__(self) -> None:
        expected = 3 if self.qkv_layout == "separate" else 1
        if len(self.qkv_proj) != expected:
            raise UnsupportedModelError(
                f"the {self.name} entry's qkv_layout '{self.qkv_layout}' needs {expected} qkv_proj path(s), "
                f"got {len(self.qkv_proj)}"
            )

    def is_parallel(self, config: object) -> bool:
        if self.parallel_residual_attr is not None:
            return bool(getattr(config, self.parallel_residual_attr, self.parallel_residual))
        return self.parallel_residual


_LLAMA_LIKE = dict(
    embed="model.embed_tokens",
    blocks="model.layers",
    final_norm="model.norm",
    unembed="lm_head",
    attn="self_attn",
    mlp="mlp",
    attn_out_proj="self_attn.o_proj",
    mlp_out_proj="mlp.down_proj",
)

_GEMMA_POST_NORM = dict(
    _LLAMA_LIKE,
    mlp_norm="pre_feedforward_layernorm",
    post_attn_norm="post_attention_layernorm",
    post_mlp_norm="post_feedforward_layernorm",
)
_QK_NORMS = dict(q_norm="self_attn.q_norm", k_norm="self_attn.k_norm")

ARCHITECTURES: dict[str, Architecture] = {
    "gpt2": Architecture(
        name="GPT-2",
        embed="transformer.wte",
        blocks="transformer.h",
        final_norm="transformer.ln_f",
        unembed="lm_head",
        attn="attn",
        mlp="mlp",
        attn_out_proj="attn.c_proj",
        mlp_out_proj="mlp.c_proj",
        out_proj_layout="conv1d",
        qkv_proj=("attn.c_attn",),
        qkv_layout="fused",
        mlp_in_proj="mlp.c_fc",
        mlp_gate_proj=None,
        pos_embed="transformer.wpe",
        attn_norm="ln_1",
        mlp_norm="ln_2",
    ),
    "gpt_neox": Architecture(
        name="GPT-NeoX / Pythia",
        embed="gpt_neox.embed_in",
        blocks="gpt_neox.layers",
        final_norm="gpt_neox.final_layer_norm",
        unembed="lm_head",
        attn="attention",
        mlp="mlp",
        attn_out_proj="attention.dense",
        mlp_out_proj="mlp.dense_4h_to_h",
        qkv_proj=("attention.query_key_value",),
        qkv_layout="fused_per_head",
        mlp_in_proj="mlp.dense_h_to_4h",
        mlp_gate_proj=None,
        parallel_residual=True,
        parallel_residual_attr="use_parallel_residual",
    ),
    "llama": Architecture(name="Llama / SmolLM", **_LLAMA_LIKE),
    "mistral": Architecture(name="Mistral", **_LLAMA_LIKE),
    "qwen2": Architecture(name="Qwen2", **_LLAMA_LIKE),
    "qwen3": Architecture(name="Qwen3", **_LLAMA_LIKE, **_QK_NORMS),
    "gemma": Architecture(name="Gemma", **_LLAMA_LIKE),
    "gemma2": Architecture(name="Gemma 2", **_GEMMA_POST_NORM),
    "gemma3_text": Architecture(name="Gemma 3", **_GEMMA_POST_NORM, **_QK_NORMS),
}


def architecture_for(model_type: str) -> Architecture:
    """The entry for a config's ``model_type``, or a one-line error naming the supported ones."""
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        supported = ", ".join(sorted(ARCHITECTURES))
        raise UnsupportedModelError(
            f"model type '{model_type}' has no glasslab architecture entry (supported: {supported}); "
            "add one in glasslab/model/architectures.py as docs/adding-a-family.md explains"
        ) from None
