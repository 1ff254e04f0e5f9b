"""Tiny random models of every supported family, built from transformers configs (no download).

Each gets a real word-level ``PreTrainedTokenizerFast`` so the whole tokenization path is exercised.
"""

from __future__ import annotations

import functools

import torch
import transformers as tf
from tokenizers import Tokenizer, models, pre_tokenizers

import glasslab as gl
from glasslab.model.architectures import architecture_for

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "a",
    "dog",
    "ran",
    "to",
    "park",
    "when",
    "mary",
    "and",
    "john",
    "went",
    "store",
    "gave",
    "drink",
    "is",
    "capital",
    "of",
    "france",
    "paris",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
]
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
VOCAB = 96  # words + specials, padded with unused ids

_COMMON = dict(vocab_size=VOCAB, pad_token_id=0, bos_token_id=1, eos_token_id=2)
_ATTN = dict(
    num_hidden_layers=3, num_attention_heads=4, hidden_size=32, intermediate_size=64, max_position_embeddings=64
)

FAMILIES: dict[str, callable] = {
    "gpt2": lambda: tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=3, n_head=4, n_embd=32, n_positions=64, **_COMMON)),
    "gpt_neox": lambda: tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(**_ATTN, **_COMMON, use_parallel_residual=True)),
    "gpt_neox_sequential": lambda: tf.GPTNeoXForCausalLM(
        tf.GPTNeoXConfig(**_ATTN, **_COMMON, use_parallel_residual=False)
    ),
    "llama": lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**_ATTN, **_COMMON, num_key_value_heads=2)),
    "mistral": lambda: tf.MistralForCausalLM(
        tf.MistralConfig(**_ATTN, **_COMMON, num_key_value_heads=2, sliding_window=4)
    ),
    "qwen2": lambda: tf.Qwen2ForCausalLM(tf.Qwen2Config(**_ATTN, **_COMMON, num_key_value_heads=2)),
    "qwen3": lambda: tf.Qwen3ForCausalLM(tf.Qwen3Config(**_ATTN, **_COMMON, num_key_value_heads=2, head_dim=8)),
    "gemma": lambda: tf.GemmaForCausalLM(tf.GemmaConfig(**_ATTN, **_COMMON, num_key_value_heads=1, head_dim=8)),
    "gemma2": lambda: tf.Gemma2ForCausalLM(
        tf.Gemma2Config(
            **_ATTN,
            **_COMMON,
            num_key_value_heads=2,
            head_dim=8,
            sliding_window=4,
            attn_logit_softcapping=5.0,
            final_logit_softcapping=3.0,
        )
    ),
    "gemma3": lambda: tf.Gemma3ForCausalLM(
        tf.Gemma3TextConfig(
            **_ATTN,
            **_COMMON,
            num_key_value_heads=1,
            head_dim=8,
            sliding_window=4,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        )
    ),
}


def word_tokenizer() -> tf.PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return tf.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


@functools.cache
def tiny_hf(family: str) -> tf.PreTrainedModel:
    """The same random weights every time (seeded), in eval mode."""
    torch.manual_seed(0)
    model = FAMILIES[family]().eval()
    # Random init leaves some weights tiny; widen them so every path matters numerically.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or "ln" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model


@functools.cache
def tiny_model(family: str) -> gl.Model:
    hf = tiny_hf(family)
    return gl.Model(hf, word_tokenizer(), architecture_for(hf.config.model_type), name=f"tiny-{family}")


def save_tiny(family: str, folder) -> None:
    """Write a tiny model + tokenizer as a Hugging Face folder (for loading and CLI tests)."""
    tiny_hf(family).save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)


def tiny_sae():
    """A seeded standard SAE (32 -> 48 features) on the tiny models' ``blocks.1.resid_post``: weights scaled so
    several features fire on any prompt (the SAE the server and workbench tests save into a temporary store)."""
    from glasslab.sae import SAE, SAEConfig

    sae = SAE(SAEConfig("standard", 32, 48, "blocks.1.resid_post"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(32, 48, generator=g) / 32**0.5)
        sae.W_dec.copy_(torch.randn(48, 32, generator=g) / 48**0.5)
        sae.b_enc.copy_(0.1 * torch.randn(48, generator=g))
    return sae
