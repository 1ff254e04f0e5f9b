"""Where each model family keeps its parts, as data.

glasslab never reimplements a model: it hooks the Hugging Face modules in place. An entry says which
module paths hold the embedding, the blocks, the attention and MLP output projections and the final
norm, and the few facts that change how residual-stream quantities are read (parallel residual,
post-norms). Adding a family is one ``Architecture(...)`` entry in ``ARCHITECTURES``; see
docs/adding-a-family.md.
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
    out_proj_layout: Literal["linear", "conv1d"] = "linear"  # GPT-2's Conv1D stores weights transposed
    attn_norm: str = "input_layernorm"  # per block: the norm attention reads the residual stream through
    # Post-norm families (Gemma 2/3) normalise each sublayer's output before adding it to the residual.
    post_attn_norm: str | None = None
    post_mlp_norm: str | None = None
    # Parallel residual (GPT-NeoX/Pythia, GPT-J): attention and MLP both read resid_pre, so there is no
    # resid_mid. ``parallel_residual_attr`` names the config flag, ``parallel_residual`` is the fixed answer.
    parallel_residual: bool = False
    parallel_residual_attr: str | None = None

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
    post_attn_norm="post_attention_layernorm",
    post_mlp_norm="post_feedforward_layernorm",
)

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
        attn_norm="ln_1",
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
        parallel_residual=True,
        parallel_residual_attr="use_parallel_residual",
    ),
    "llama": Architecture(name="Llama / SmolLM", **_LLAMA_LIKE),
    "mistral": Architecture(name="Mistral", **_LLAMA_LIKE),
    "qwen2": Architecture(name="Qwen2", **_LLAMA_LIKE),
    "qwen3": Architecture(name="Qwen3", **_LLAMA_LIKE),
    "gemma": Architecture(name="Gemma", **_LLAMA_LIKE),
    "gemma2": Architecture(name="Gemma 2", **_GEMMA_POST_NORM),
    "gemma3_text": Architecture(name="Gemma 3", **_GEMMA_POST_NORM),
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
