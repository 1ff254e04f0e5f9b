"""model.run: selective caching, no traces left on the model, early stops, batches, gradients, tokens."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import glasslab as gl
from glasslab.model import attention

from .tiny import tiny_model

PROMPTS = ["the cat sat on the mat and the dog ran to the park", "mary gave john a drink", "one two three"]


def hook_snapshot(model: gl.Model) -> dict[str, tuple[int, ...]]:
    """The forward hooks and pre-hooks on every module (Hugging Face installs some of its own for good
    when asked for output_hidden_states / output_attentions, so runs are compared with a snapshot)."""
    return {name: (*module._forward_hooks, *module._forward_pre_hooks) for name, module in model.hf.named_modules()}


def assert_no_hooks(model: gl.Model, before: dict[str, tuple[int, ...]] | None = None) -> None:
    for name, module in model.hf.named_modules():
        where = name or "the model"
        if before is not None:
            assert (*module._forward_hooks, *module._forward_pre_hooks) == before[name], f"hook left on {where}"
        for fn in (*module._forward_hooks.values(), *module._forward_pre_hooks.values()):
            assert not getattr(fn, "__module__", "").startswith("glasslab"), f"glasslab hook left on {where}: {fn}"
    assert not any(id(module) in attention.HANDLERS.get() for module in model.hf.modules())
    assert not attention.is_switched(model.hf)


class _Boom:
    """A minimal intervention whose apply raises, to check that a failing run still cleans up."""

    hook = "blocks.1.attn.z"

    def apply(self, act, layout, ctx):
        raise RuntimeError("boom")

    def check_index(self, hook_name, layout, sizes):
        pass

    def check_positions(self, prompt_lengths, max_length):
        pass


# -- selective caching and cleanup -----------------------------------------------------------------
def test_only_requested_names_are_cached(family_model):
    names = ["blocks.0.attn_out", "blocks.1.resid_post", "ln_final"]
    run = family_model.run("the cat sat", cache=names)
    assert set(run.cache) == set(names)
    assert len(run.cache) == 3
    assert family_model.run("the cat sat").cache == {}


def test_resid_only_run_keeps_hf_attention(family_model, monkeypatch):
    hf = family_model.hf
    before = hf.config._attn_implementation
    calls = []
    original = hf.set_attn_implementation

    def record(impl):
        calls.append(impl)
        return original(impl)

    monkeypatch.setattr(hf, "set_attn_implementation", record)
    assert before == ("eager" if family_model.name == "tiny-gemma2" else "sdpa")  # Gemma 2 cannot run SDPA
    seen = []
    handle = family_model.blocks[1].register_forward_pre_hook(lambda *_: seen.append(hf.config._attn_implementation))
    try:
        family_model.run("the cat sat", cache=["blocks.*.resid_post"])
    finally:
        handle.remove()
    assert calls == [] and seen == [before]
    assert hf.config._attn_implementation == before
    # attention internals do switch (to glasslab's implementation), and switch back
    family_model.run("the cat sat", cache=["blocks.*.attn.pattern"])
    assert calls == ["glasslab", before]
    assert hf.config._attn_implementation == before
    monkeypatch.undo()
    assert_no_hooks(family_model)


def test_no_hooks_remain_after_any_run(family_model):
    before = hook_snapshot(family_model)
    assert_no_hooks(family_model, before)
    family_model.run("the cat sat", cache=["*"])
    assert_no_hooks(family_model, before)
    family_model.run("the cat sat", cache=["*"], stop_at_layer=1)
    assert_no_hooks(family_model, before)
    family_model.run("the cat sat", cache=["*"], logits=False)
    assert_no_hooks(family_model, before)
    family_model.run(["the cat sat", "a dog"], cache=["*"], grad=True)
    assert_no_hooks(family_model, before)
    with pytest.raises(gl.HookNameError):
        family_model.run("the cat", cache=["blocks.0.nope"])
    assert_no_hooks(family_model, before)


def test_failing_run_cleans_up():
    model = tiny_model("llama")
    before, hooks = model.hf.config._attn_implementation, hook_snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        model.run("the cat sat", cache=["blocks.0.resid_post"], interventions=[_Boom()])
    assert_no_hooks(model, hooks)
    assert model.hf.config._attn_implementation == before
    # the model is the plain HF model again
    run = model.run("the cat sat")
    with torch.no_grad():
        assert torch.equal(run.logits, model.hf(run.tokens).logits)


@pytest.mark.parametrize("site", ["attn.z", "attn.pattern", "attn.q", "attn.head_out"])
def test_attention_internals_of_one_layer(family_model, site):
    """Caching one layer's attention internals must leave the other layers' attention as the model's own."""
    run = family_model.run(PROMPTS[:2], cache=[f"blocks.1.{site}"])
    assert list(run.cache) == [f"blocks.1.{site}"]
    with torch.no_grad():
        expected = family_model.hf(input_ids=run.tokens, attention_mask=run.attention_mask).logits
    mask = run.attention_mask.bool()
    assert_close(run.logits[mask], expected[mask], rtol=0, atol=1e-5)


# -- stopping early ----------------------------------------------------------------------------------
def test_stop_at_layer(family_model):
    names = ["blocks.*.resid_pre", "blocks.*.resid_post"]
    full = family_model.run(PROMPTS, cache=names)
    for stop in range(family_model.n_layers + 1):
        calls = []
        handles = [
            block.register_forward_hook(lambda _m, _a, _o, i=i, calls=calls: calls.append(i))
            for i, block in enumerate(family_model.blocks)
        ]
        try:
            run = family_model.run(PROMPTS, cache=names, stop_at_layer=stop)
        finally:
            for handle in handles:
                handle.remove()
        assert run.logits is None
        assert calls == list(range(stop))  # blocks from `stop` on never ran
        for layer in range(stop):
            for site in ("resid_pre", "resid_post"):
                name = f"blocks.{layer}.{site}"
                assert torch.equal(run.cache[name], full.cache[name])
        assert not any(f"blocks.{layer}." in name for layer in range(stop, family_model.n_layers) for name in run.cache)
        with pytest.raises(ValueError):
            run.last_logits()


@pytest.mark.parametrize("stop", [-1, 4, 100])
def test_stop_at_layer_out_of_range(stop):
    model = tiny_model("llama")
    with pytest.raises(gl.InputError) as info:
        model.run("the cat", stop_at_layer=stop)
    assert "stop_at_layer" in str(info.value) and "0..3" in str(info.value)


def test_logits_false(family_model):
    full = family_model.run(PROMPTS, cache=["ln_final"])
    calls = []
    head = family_model.module(family_model.arch.unembed)
    handle = head.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        run = family_model.run(PROMPTS, cache=["ln_final"], logits=False)
    finally:
        handle.remove()
    assert run.logits is None and calls == []
    assert torch.equal(run.cache["ln_final"], full.cache["ln_final"])
    # the cached final norm is the HF model's last hidden state
    with torch.no_grad():
        hidden = family_model.hf(input_ids=run.tokens, attention_mask=run.attention_mask, output_hidden_states=True)
    mask = run.attention_mask.bool()
    assert_close(run.cache["ln_final"][mask], hidden.hidden_states[-1][mask], rtol=0, atol=1e-5)


# -- batches ---------------------------------------------------------------------------------------
def test_batch_matches_prompts_alone(family_model):
    batch = family_model.run(PROMPTS, cache=["blocks.1.resid_post"])
    lengths = [len(family_model.to_tokens(p)[0]) for p in PROMPTS]
    assert batch.prompt_lengths.tolist() == lengths
    assert batch.tokens.shape == (len(PROMPTS), max(lengths))
    assert batch.attention_mask.sum(1).tolist() == lengths
    last = batch.last_logits()
    assert last.shape == (len(PROMPTS), family_model.vocab_size)
    for i, prompt in enumerate(PROMPTS):
        alone = family_model.run(prompt, cache=["blocks.1.resid_post"])
        n = lengths[i]
        assert torch.equal(batch.tokens[i, :n], alone.tokens[0])
        assert (batch.tokens[i, n:] == family_model.pad_token_id).all()
        assert (batch.attention_mask[i, n:] == 0).all()
        assert_close(batch.logits[i, :n], alone.logits[0], rtol=0, atol=1e-5)
        assert_close(last[i], alone.logits[0, -1], rtol=0, atol=1e-5)
        assert_close(
            batch.cache["blocks.1.resid_post"][i, :n], alone.cache["blocks.1.resid_post"][0], rtol=0, atol=1e-5
        )


def test_batch_with_attention_internals_matches_alone(family_model):
    batch = family_model.run(PROMPTS[:2], cache=["blocks.0.attn.pattern", "blocks.2.attn.head_out"])
    for i, prompt in enumerate(PROMPTS[:2]):
        alone = family_model.run(prompt, cache=["blocks.0.attn.pattern", "blocks.2.attn.head_out"])
        n = int(batch.prompt_lengths[i])
        assert_close(batch.logits[i, :n], alone.logits[0], rtol=0, atol=1e-5)
        pattern = batch.cache["blocks.0.attn.pattern"][i, :, :n, :n]
        assert_close(pattern, alone.cache["blocks.0.attn.pattern"][0], rtol=0, atol=1e-5)
        head_out = batch.cache["blocks.2.attn.head_out"][i, :n]
        assert_close(head_out, alone.cache["blocks.2.attn.head_out"][0], rtol=0, atol=1e-5)


# -- gradients -------------------------------------------------------------------------------------
def hf_gradient(model: gl.Model, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    """d max(logits[0, -1]) / d (output of block ``layer``), computed on the bare HF model."""
    leaf = {}

    def make_leaf(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        leaf["x"] = hidden.detach().requires_grad_(True)
        return (leaf["x"], *output[1:]) if isinstance(output, tuple) else leaf["x"]

    handle = model.blocks[layer].register_forward_hook(make_leaf)
    try:
        with torch.enable_grad():
            logits = model.hf(tokens).logits
            (grad,) = torch.autograd.grad(logits[0, -1].max(), leaf["x"])
    finally:
        handle.remove()
    return grad


def test_grad_run(family_model):
    hooks = hook_snapshot(family_model)
    run = family_model.run("the cat sat on the mat", cache=["blocks.1.resid_post", "embed"], grad=True)
    resid = run.cache["blocks.1.resid_post"]
    assert resid.requires_grad and run.logits.requires_grad
    (grad,) = torch.autograd.grad(run.logits[0, -1].max(), resid, retain_graph=True)
    assert grad.shape == resid.shape
    assert grad.abs().sum() > 0
    assert_close(grad, hf_gradient(family_model, run.tokens, 1), rtol=1e-4, atol=1e-6)
    # the gradient also reaches the embeddings (the graph's leaf)
    (embed_grad,) = torch.autograd.grad(run.logits[0, -1].max(), run.cache["embed"])
    assert embed_grad.abs().sum() > 0
    for name, param in family_model.hf.named_parameters():
        assert param.grad is None, name
        assert not param.requires_grad, name
    assert_no_hooks(family_model, hooks)


def test_no_grad_run_caches_plain_tensors(family_model):
    run = family_model.run("the cat sat", cache=["blocks.1.resid_post", "blocks.*.attn.z"])
    for tensor in (*run.cache.values(), run.logits):
        assert not tensor.requires_grad
    with pytest.raises(RuntimeError):
        torch.autograd.grad(run.logits[0, -1].max(), run.cache["blocks.1.resid_post"])


# -- tokens ----------------------------------------------------------------------------------------
def test_bos_is_prepended_by_default(family_model):
    tokenizer = family_model.tokenizer
    text = "the cat sat"
    bare = tokenizer(text, add_special_tokens=False)["input_ids"]
    tokens = family_model.to_tokens(text)
    assert tokens.shape == (1, len(bare) + 1)
    assert tokens[0, 0].item() == tokenizer.bos_token_id == 1
    assert tokens[0, 1:].tolist() == bare
    assert family_model.to_tokens(text, prepend_bos=False)[0].tolist() == bare
    assert family_model.to_str_tokens(text) == ["<bos>", "the", "cat", "sat"]
    assert family_model.to_str_tokens(text, prepend_bos=False) == ["the", "cat", "sat"]
    assert family_model.to_str_tokens(tokens) == ["<bos>", "the", "cat", "sat"]
    run = family_model.run(text, prepend_bos=False)
    assert run.tokens[0].tolist() == bare and run.logits.shape[1] == len(bare)
    assert family_model.run(text).tokens[0, 0].item() == tokenizer.bos_token_id


def test_token_tensor_input(family_model):
    text = "mary gave john a drink"
    from_text = family_model.run(text, cache=["blocks.0.resid_post"])
    tokens = family_model.to_tokens(text)
    for given in (tokens, tokens[0]):
        run = family_model.run(given, cache=["blocks.0.resid_post"])
        assert torch.equal(run.tokens, tokens)
        assert torch.equal(run.logits, from_text.logits)
        assert torch.equal(run.cache["blocks.0.resid_post"], from_text.cache["blocks.0.resid_post"])
    with torch.no_grad():
        assert torch.equal(family_model.run(tokens).logits, family_model.hf(tokens).logits)
