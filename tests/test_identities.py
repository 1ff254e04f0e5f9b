"""Cached activations against Hugging Face's own computation, and the identities that tie them together.

Every check compares a cached value with something computed another way: the Hugging Face model run
on its own (eager attention where attention internals are involved), the model's own modules applied
by hand, or a sum that the block performs. Batches are right-padded, so checks look only at real
(unpadded) positions.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.testing import assert_close

import glasslab as gl

PROMPTS = ["the cat sat on the mat and the dog ran to the park", "mary gave john a drink"]


@contextlib.contextmanager
def eager_attention(hf):
    """Switch the HF model to eager attention, and back to what it was (sdpa, or eager for Gemma 2)."""
    previous = hf.config._attn_implementation
    hf.set_attn_implementation("eager")
    try:
        yield
    finally:
        hf.set_attn_implementation(previous)


def real(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rows of a [batch, pos, ...] tensor at real positions."""
    return x[mask.bool()]


def close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    """Equal up to ``rel`` relative to the tensors' magnitude (sums of large terms round in fp32)."""
    scale = max(1.0, expected.abs().max().item())
    assert_close(actual, expected, rtol=rel, atol=rel * scale)


def softcap(logits: torch.Tensor, config) -> torch.Tensor:
    cap = getattr(config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def is_gpt2(model: gl.Model) -> bool:
    return model.hf.config.model_type == "gpt2"


def w_o(model: gl.Model, layer: int) -> torch.Tensor:
    """[head, d_head, d_model] from the raw HF output projection weight."""
    weight = model.block_module(layer, model.arch.attn_out_proj).weight.detach()
    if not is_gpt2(model):  # nn.Linear stores [out, in]; GPT-2's Conv1D stores [in, out]
        weight = weight.T
    return weight.reshape(model.n_heads, model.d_head, model.d_model)


def rms_scale(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """Gemma post-norm, written out: x * rsqrt(mean(x^2) + eps) * (1 + weight) == norm(x) / x * x."""
    eps = getattr(norm, "eps", None) or norm.variance_epsilon
    return torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + norm.weight.detach())


@pytest.fixture
def full_run(family_model):
    return family_model, family_model.run(PROMPTS, cache=["*"])


# -- exactness against Hugging Face ----------------------------------------------------------------
def test_plain_logits_equal_hf_exactly(family_model):
    run = family_model.run(PROMPTS)
    with torch.no_grad():
        expected = family_model.hf(input_ids=run.tokens, attention_mask=run.attention_mask).logits
    mask = run.attention_mask
    assert_close(real(run.logits, mask), real(expected, mask), rtol=0, atol=1e-5)
    single = family_model.run(PROMPTS[0])
    with torch.no_grad():
        expected_single = family_model.hf(single.tokens).logits
    assert torch.equal(single.logits, expected_single)


def test_cached_run_matches_eager_hf(full_run):
    model, run = full_run
    hf, mask = model.hf, run.attention_mask
    with eager_attention(hf), torch.no_grad():
        out = hf(input_ids=run.tokens, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert hf.config._attn_implementation in ("sdpa", "eager")
    close(real(run.logits, mask), real(out.logits, mask))
    # HF's hidden_states[L] is the input of block L; the last one is the final norm's output.
    for layer in range(model.n_layers):
        close(real(run.cache[f"blocks.{layer}.resid_pre"], mask), real(out.hidden_states[layer], mask))
    close(real(run.cache["ln_final"], mask), real(out.hidden_states[-1], mask))
    close(real(run.cache["logits"], mask), real(out.logits, mask))
    # attn.pattern is HF's attention weights (eager), on real query positions.
    for layer in range(model.n_layers):
        pattern = run.cache[f"blocks.{layer}.attn.pattern"]
        for b, n in enumerate(run.prompt_lengths.tolist()):
            close(pattern[b, :, :n, :n], out.attentions[layer][b, :, :n, :n])
            assert (pattern[b, :, :n, n:] == 0).all()  # real queries never attend to padding


def test_pattern_rows_sum_to_one_and_causal(full_run):
    model, run = full_run
    for layer in range(model.n_layers):
        pattern = run.cache[f"blocks.{layer}.attn.pattern"]
        for b, n in enumerate(run.prompt_lengths.tolist()):
            rows = pattern[b, :, :n, :n]
            assert_close(rows.sum(-1), torch.ones_like(rows.sum(-1)), rtol=0, atol=1e-5)
            assert (rows >= 0).all()
            assert torch.triu(rows, diagonal=1).abs().max() == 0  # no attention to the future


def test_shapes(full_run):
    model, run = full_run
    config = model.hf.config
    batch, pos = run.tokens.shape
    heads = config.num_attention_heads if hasattr(config, "num_attention_heads") else config.n_head
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    d_model = config.hidden_size
    d_head = getattr(config, "head_dim", None) or d_model // heads
    d_mlp = getattr(config, "intermediate_size", None) or 4 * d_model
    c = run.cache
    for layer in range(model.n_layers):
        n = f"blocks.{layer}."
        assert c[n + "attn.q"].shape == (batch, pos, heads, d_head)
        assert c[n + "attn.k"].shape == (batch, pos, kv_heads, d_head)
        assert c[n + "attn.v"].shape == (batch, pos, kv_heads, d_head)
        assert c[n + "attn.pattern"].shape == (batch, heads, pos, pos)
        assert c[n + "attn.z"].shape == (batch, pos, heads, d_head)
        assert c[n + "attn.head_out"].shape == (batch, pos, heads, d_model)
        assert c[n + "mlp.post"].shape == (batch, pos, d_mlp)
        for site in ("resid_pre", "resid_post", "attn_out", "mlp_out"):
            assert c[n + site].shape == (batch, pos, d_model)
    assert c["embed"].shape == c["ln_final"].shape == (batch, pos, d_model)
    assert c["logits"].shape == (batch, pos, config.vocab_size)


# -- residual-stream identities --------------------------------------------------------------------
def test_residual_identities(full_run):
    model, run = full_run
    c, mask = run.cache, run.attention_mask
    for layer in range(model.n_layers):
        n = f"blocks.{layer}."
        pre, post = real(c[n + "resid_pre"], mask), real(c[n + "resid_post"], mask)
        attn, mlp = real(c[n + "attn_out"], mask), real(c[n + "mlp_out"], mask)
        if model.parallel_residual:
            assert n + "resid_mid" not in c
            close(post, pre + attn + mlp)
        else:
            mid = real(c[n + "resid_mid"], mask)
            close(mid, pre + attn)
            close(post, mid + mlp)
        if layer + 1 < model.n_layers:
            assert torch.equal(real(c[f"blocks.{layer + 1}.resid_pre"], mask), post)


def test_embed_feeds_resid_pre_0(full_run):
    model, run = full_run
    c, mask = run.cache, run.attention_mask
    if is_gpt2(model):
        positions = torch.arange(run.tokens.shape[1])
        with torch.no_grad():
            expected = c["embed"] + model.module("transformer.wpe")(positions)[None]
        close(real(c["blocks.0.resid_pre"], mask), real(expected, mask))
        assert not torch.allclose(c["embed"], c["blocks.0.resid_pre"])
    else:
        assert torch.equal(real(c["embed"], mask), real(c["blocks.0.resid_pre"], mask))
    # and the embed hook is the embedding module's output for these tokens
    with torch.no_grad():
        close(c["embed"], model.module(model.arch.embed)(run.tokens))


def test_final_norm_and_unembed(full_run):
    model, run = full_run
    c, mask = run.cache, run.attention_mask
    last = c[f"blocks.{model.n_layers - 1}.resid_post"]
    with torch.no_grad():
        normed = model.module(model.arch.final_norm)(last)
        by_hand = softcap(model.module(model.arch.unembed)(c["ln_final"]), model.hf.config)
        unembedded = model.unembed(last)
    close(real(c["ln_final"], mask), real(normed, mask))
    close(real(by_hand, mask), real(run.logits, mask))
    close(real(unembedded, mask), real(run.logits, mask))


def test_head_out_sums_to_attn_out(full_run):
    model, run = full_run
    c, mask = run.cache, run.attention_mask
    for layer in range(model.n_layers):
        n = f"blocks.{layer}."
        total = c[n + "attn.head_out"].sum(dim=2)
        bias = model.block_module(layer, model.arch.attn_out_proj).bias
        if bias is not None:
            assert model.arch.post_attn_norm is None
            total = total + bias.detach()
        close(real(total, mask), real(c[n + "attn_out"], mask))


def test_head_out_is_z_times_w_o(full_run):
    model, run = full_run
    c, mask = run.cache, run.attention_mask
    for layer in range(model.n_layers):
        n = f"blocks.{layer}."
        weights = w_o(model, layer)
        assert_close(model.output_weights(layer), weights, rtol=0, atol=0)
        z, head_out = c[n + "attn.z"], c[n + "attn.head_out"]
        out_proj = model.block_module(layer, model.arch.attn_out_proj)
        with torch.no_grad():
            pre_norm = out_proj(z.flatten(-2))  # the HF projection of all heads at once
        if model.arch.post_attn_norm:
            norm = model.block_module(layer, model.arch.post_attn_norm)
            with torch.no_grad():
                close(real(norm(pre_norm), mask), real(c[n + "attn_out"], mask))
            factor = rms_scale(pre_norm, norm)
        else:
            close(real(pre_norm, mask), real(c[n + "attn_out"], mask))
            factor = 1.0
        for head in range(model.n_heads):
            expected = (z[..., head, :] @ weights[head]) * factor
            close(real(head_out[..., head, :], mask), real(expected, mask))


def test_z_is_pattern_times_v(full_run):
    model, run = full_run
    c, mask = run.cache, run.attention_mask
    group = model.n_heads // model.n_kv_heads
    for layer in range(model.n_layers):
        n = f"blocks.{layer}."
        v = c[n + "attn.v"].repeat_interleave(group, dim=2)  # [b, key, head, d_head]
        z = torch.einsum("bhqk,bkhd->bqhd", c[n + "attn.pattern"], v)
        close(real(c[n + "attn.z"], mask), real(z, mask))


def test_mlp_out_is_down_projection_of_neurons(full_run):
    model, run = full_run
    c, mask = run.cache, run.attention_mask
    for layer in range(model.n_layers):
        n = f"blocks.{layer}."
        with torch.no_grad():
            down = model.block_module(layer, model.arch.mlp_out_proj)(c[n + "mlp.post"])
            if model.arch.post_mlp_norm:
                down = model.block_module(layer, model.arch.post_mlp_norm)(down)
        close(real(c[n + "mlp_out"], mask), real(down, mask))


def test_attn_and_mlp_out_match_modules_on_their_inputs(full_run):
    """The MLP read by hand from its input (the residual, normed by the block's own norm) gives mlp_out,
    and that normed input is ``mlp.in``."""
    model, run = full_run
    c, mask = run.cache, run.attention_mask
    if is_gpt2(model):
        norm_name = "ln_2"
    elif model.hf.config.model_type == "gpt_neox":
        norm_name = "post_attention_layernorm"
    elif model.arch.post_mlp_norm:
        norm_name = "pre_feedforward_layernorm"
    else:
        norm_name = "post_attention_layernorm"
    for layer in range(model.n_layers):
        n = f"blocks.{layer}."
        source = c[n + "resid_pre"] if model.parallel_residual else c[n + "resid_mid"]
        with torch.no_grad():
            normed = model.block_module(layer, norm_name)(source)
            out = model.block_module(layer, model.arch.mlp)(normed)
            if model.arch.post_mlp_norm:
                out = model.block_module(layer, model.arch.post_mlp_norm)(out)
        close(real(c[n + "mlp_out"], mask), real(out, mask))
        close(real(c[n + "mlp.in"], mask), real(normed, mask))  # mlp.in is the normed residual


# -- the real default model (Gemma 3 270M) -----------------------------------------------------------
DEFAULT_PROMPT = "The capital of France is Paris, and the capital of Italy is"


@pytest.fixture(scope="module")
def default_run(default_model):
    return default_model, default_model.run(DEFAULT_PROMPT, cache=["*"])


def big_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Gemma's residual stream reaches ~1e5; fp32 sums of such terms round at ~1e-2."""
    assert_close(actual, expected, rtol=1e-4, atol=1e-5 * max(1.0, expected.abs().max().item()))


@pytest.mark.slow
def test_default_plain_logits_equal_hf_exactly(default_model):
    run = default_model.run(DEFAULT_PROMPT)
    assert 8 <= run.tokens.shape[1] <= 16
    with torch.no_grad():
        expected = default_model.hf(run.tokens).logits
    assert torch.equal(run.logits, expected)


@pytest.mark.slow
def test_default_identities(default_run):
    model, run = default_run
    c = run.cache
    assert model.arch.post_attn_norm is not None
    for layer in range(model.n_layers):
        n = f"blocks.{layer}."
        big_close(c[n + "resid_mid"], c[n + "resid_pre"] + c[n + "attn_out"])
        big_close(c[n + "resid_post"], c[n + "resid_mid"] + c[n + "mlp_out"])
        big_close(c[n + "attn.head_out"].sum(dim=2), c[n + "attn_out"])
        if layer + 1 < model.n_layers:
            assert torch.equal(c[f"blocks.{layer + 1}.resid_pre"], c[n + "resid_post"])
        pattern = c[n + "attn.pattern"]
        assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)), rtol=0, atol=1e-5)
    assert torch.equal(c["embed"], c["blocks.0.resid_pre"])
    last = c[f"blocks.{model.n_layers - 1}.resid_post"]
    with torch.no_grad():
        big_close(c["ln_final"], model.module(model.arch.final_norm)(last))
        big_close(model.unembed(last), run.logits)


@pytest.mark.slow
def test_default_cached_run_matches_eager_hf(default_run):
    model, run = default_run
    with eager_attention(model.hf), torch.no_grad():
        out = model.hf(run.tokens, output_attentions=True)
    assert model.hf.config._attn_implementation == "sdpa"
    big_close(run.logits, out.logits)
    for layer in (0, model.n_layers // 2, model.n_layers - 1):
        assert_close(run.cache[f"blocks.{layer}.attn.pattern"], out.attentions[layer], rtol=1e-4, atol=1e-5)
