"""Interventions (Ablate, Patch, Add, Clamp, Replace): each checked against an independent computation.

The second routes edit a deep copy of the Hugging Face weights, or hook the Hugging Face modules by
hand, or compute means / sums directly from cached activations, so the code path under test is never
its own reference.
"""

from __future__ import annotations

import copy

import pytest
import torch

import glasslab as gl
from glasslab.model import attention

from .tiny import tiny_model

# Prompts of the same length (11 tokens with BOS) so runs can be patched into one another.
CLEAN = "the cat sat on the mat and the dog ran"
CORRUPT = "the dog ran to the park and mary gave john"
OTHER = "mary and john went to the store and gave a"
N_TOKENS = 11
LAYER = 1
ATOL = 1e-5


# -- helpers -----------------------------------------------------------------------------------------
def logits(model: gl.Model, prompt, **kwargs) -> torch.Tensor:
    return model.run(prompt, **kwargs).logits


def hf_logits(hf, model: gl.Model, prompt) -> torch.Tensor:
    """Logits straight from a Hugging Face module, bypassing glasslab's run machinery."""
    tokens = model.tokenize(prompt)
    with torch.no_grad():
        return hf(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, use_cache=False).logits


def with_block_output_hook(model: gl.Model, layer: int, fn, prompt) -> torch.Tensor:
    """Logits with ``fn`` applied to block ``layer``'s output by a hand-written HF forward hook."""

    def hook(_module, _args, output):
        if isinstance(output, tuple):
            return (fn(output[0]), *output[1:])
        return fn(output)

    handle = model.blocks[layer].register_forward_hook(hook)
    try:
        return hf_logits(model.hf, model, prompt)
    finally:
        handle.remove()


def hooks_left(model: gl.Model) -> list[str]:
    """glasslab's hooks still attached (Hugging Face keeps output-capturing hooks of its own for good once
    output_hidden_states / output_attentions has been used on a shared tiny model: those are not ours)."""
    left = []
    for name, module in model.hf.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"):
            for fn in getattr(module, attr, {}).values():
                if getattr(fn, "__module__", "").startswith("glasslab"):
                    left.append(f"{name or '<root>'}.{attr}")
    left += [
        f"attention handler {key}" for key in attention.HANDLERS.get() if key in {id(m) for m in model.hf.modules()}
    ]
    left += ["attention switch"] if attention.is_switched(model.hf) else []
    return left


def assert_pristine(model: gl.Model, baseline: torch.Tensor, attn_impl: str) -> None:
    assert hooks_left(model) == []
    assert model._active == []
    assert model.hf.config._attn_implementation == attn_impl
    assert torch.equal(logits(model, CLEAN), baseline)


def zero_head_in_out_proj(model: gl.Model, hf, layer: int, head: int) -> None:
    """Zero the input columns of the attention output projection that read ``head``'s z."""
    proj = hf.get_submodule(model.arch.blocks)[layer].get_submodule(model.arch.attn_out_proj)
    cols = slice(head * model.d_head, (head + 1) * model.d_head)
    with torch.no_grad():
        if model.arch.out_proj_layout == "conv1d":
            proj.weight[cols, :] = 0
        else:
            proj.weight[:, cols] = 0


def random_vector(model: gl.Model, seed: int = 0) -> torch.Tensor:
    return torch.randn(model.d_model, generator=torch.Generator().manual_seed(seed))


# -- Ablate ------------------------------------------------------------------------------------------
def test_zero_ablating_a_head_equals_zeroing_its_output_projection_columns(family_model):
    model = family_model
    head = 2
    edited = copy.deepcopy(model.hf)
    zero_head_in_out_proj(model, edited, LAYER, head)
    expected = hf_logits(edited, model, CLEAN)
    got = logits(model, CLEAN, interventions=[gl.Ablate(f"blocks.{LAYER}.attn.z", head=head)])
    assert not torch.allclose(got, logits(model, CLEAN), atol=1e-4), "the head should matter"
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_ablating_head_out_matches_z_or_subtracts_the_share(family_model):
    model = family_model
    head = 1
    hook_z, hook_out = f"blocks.{LAYER}.attn.z", f"blocks.{LAYER}.attn.head_out"
    attn_out = f"blocks.{LAYER}.attn_out"
    if model.arch.post_attn_norm is None:
        by_z = logits(model, CLEAN, interventions=[gl.Ablate(hook_z, head=head)])
        by_out = logits(model, CLEAN, interventions=[gl.Ablate(hook_out, head=head)])
        torch.testing.assert_close(by_out, by_z, atol=ATOL, rtol=0)
    # Every family: with head_out ablated, attn_out is the clean attn_out minus that head's share.
    clean = model.run(CLEAN, cache=[hook_out, attn_out])
    ablated = model.run(CLEAN, cache=[attn_out], interventions=[gl.Ablate(hook_out, head=head)])
    expected = clean.cache[attn_out] - clean.cache[hook_out][:, :, head]
    torch.testing.assert_close(ablated.cache[attn_out], expected, atol=ATOL, rtol=0)


def test_mean_ablation_equals_clamp_to_hand_computed_mean(family_model):
    model = family_model
    hook = f"blocks.{LAYER}.resid_post"
    # Different lengths: the padding positions of the shorter prompt must not count.
    reference = model.run(["the cat sat on the mat", "mary and john went to the store and gave a drink"], cache=[hook])
    lengths = reference.prompt_lengths.tolist()
    assert lengths[0] != lengths[1]
    values = reference.cache[hook]
    mean = torch.cat([values[i, :n] for i, n in enumerate(lengths)]).double().mean(0).float()
    got = model.run(CLEAN, cache=[hook], interventions=[gl.Ablate(hook, how="mean", reference=reference)])
    torch.testing.assert_close(got.cache[hook], mean.expand_as(got.cache[hook]), atol=1e-5, rtol=0)
    expected = logits(model, CLEAN, interventions=[gl.Clamp(hook, value=mean)])
    torch.testing.assert_close(got.logits, expected, atol=ATOL, rtol=0)


def test_mean_ablation_of_one_head_at_one_position_equals_replace_by_hand():
    model = tiny_model("llama")
    hook, head, position = f"blocks.{LAYER}.attn.z", 3, 4
    reference = model.run([CORRUPT, OTHER], cache=[hook])
    mean = reference.cache[hook].double().mean(dim=(0, 1)).float()  # [head, d_head]; no padding here

    def by_hand(z):
        z = z.clone()
        z[:, position, head] = mean[head]
        return z

    got = model.run(
        CLEAN,
        cache=[hook],
        interventions=[gl.Ablate(hook, head=head, position=position, how="mean", reference=reference)],
    )
    expected = model.run(CLEAN, cache=[hook], interventions=[gl.Replace(hook, fn=by_hand)])
    torch.testing.assert_close(got.cache[hook], expected.cache[hook], atol=1e-6, rtol=0)
    torch.testing.assert_close(got.logits, expected.logits, atol=ATOL, rtol=0)
    # Only that head at that position moved.
    clean = model.run(CLEAN, cache=[hook]).cache[hook]
    changed = (got.cache[hook] != clean).any(dim=-1)[0]
    assert changed.nonzero().tolist() == [[position, head]]


def test_resample_ablation_is_seeded_and_uses_reference_rows(family_model):
    model = family_model
    hook = f"blocks.{LAYER}.resid_mid" if not model.parallel_residual else f"blocks.{LAYER}.resid_pre"
    reference = model.run([CLEAN, CORRUPT, OTHER], cache=[hook])
    targets = ["one two three four five six seven eight nine ten", "the cat sat on the mat and mary gave a"]
    assert model.to_tokens(targets).shape[1] == N_TOKENS

    def resampled(seed):
        return model.run(
            targets, cache=[hook], interventions=[gl.Ablate(hook, how="resample", reference=reference, seed=seed)]
        )

    first, second = resampled(7), resampled(7)
    assert torch.equal(first.logits, second.logits)
    assert torch.equal(first.cache[hook], second.cache[hook])
    ref_rows = reference.cache[hook]
    for row in first.cache[hook]:
        assert any(torch.equal(row, candidate) for candidate in ref_rows), "each row must be one reference prompt's"
    # The logits are then those of the reference prompt that was drawn (run to completion from there).
    for i, row in enumerate(first.cache[hook]):
        j = next(k for k, candidate in enumerate(ref_rows) if torch.equal(row, candidate))
        clean_j = logits(model, [CLEAN, CORRUPT, OTHER][j])[0]
        torch.testing.assert_close(first.logits[i], clean_j, atol=ATOL, rtol=0)
    seeds = {tuple(resampled(s).cache[hook][:, 1, 0].tolist()) for s in range(6)}
    assert len(seeds) > 1, "different seeds should be able to draw different rows"


def test_ablate_without_index_zeroes_the_whole_activation(family_model):
    model = family_model
    for hook in (f"blocks.{LAYER}.mlp.post", f"blocks.{LAYER}.resid_pre"):
        run = model.run(CLEAN, cache=[hook], interventions=[gl.Ablate(hook)])
        assert torch.count_nonzero(run.cache[hook]) == 0
        assert torch.isfinite(run.logits).all()
    # Zeroing resid_pre of layer L by hand: a pre-hook on the HF block.
    hook = model.blocks[LAYER].register_forward_pre_hook(
        lambda _m, args, kwargs: (
            ((torch.zeros_like(args[0]), *args[1:]), kwargs)
            if args
            else (args, {**kwargs, "hidden_states": torch.zeros_like(kwargs["hidden_states"])})
        ),
        with_kwargs=True,
    )
    try:
        expected = hf_logits(model.hf, model, CLEAN)
    finally:
        hook.remove()
    got = logits(model, CLEAN, interventions=[gl.Ablate(f"blocks.{LAYER}.resid_pre")])
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


# -- Patch -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("site", ["resid_pre", "resid_mid", "resid_post"])
def test_patching_the_residual_stream_everywhere_reproduces_clean_logits(family_model, site):
    model = family_model
    if site == "resid_mid" and model.parallel_residual:
        pytest.skip("parallel-residual families have no resid_mid")
    hook = f"blocks.{LAYER}.{site}"
    clean = model.run(CLEAN, cache=[hook])
    corrupt = logits(model, CORRUPT)
    patched = logits(model, CORRUPT, interventions=[gl.Patch(hook, source=clean)])
    assert not torch.allclose(corrupt, clean.logits, atol=1e-3)
    torch.testing.assert_close(patched, clean.logits, atol=ATOL, rtol=0)


def test_patching_every_sublayer_output_and_the_embedding_reproduces_clean_logits(family_model):
    model = family_model
    hooks = ["embed"] + [f"blocks.{L}.{s}" for L in range(model.n_layers) for s in ("attn_out", "mlp_out")]
    clean = model.run(CLEAN, cache=hooks)
    # Patching the sublayer outputs alone (not embed) must not be enough...
    without_embed = logits(model, CORRUPT, interventions=[gl.Patch(h, source=clean) for h in hooks[1:]])
    assert not torch.allclose(without_embed, clean.logits, atol=1e-3)
    # ...but with the embedding every term of the residual stream is clean.
    patched = logits(model, CORRUPT, interventions=[gl.Patch(h, source=clean) for h in hooks])
    torch.testing.assert_close(patched, clean.logits, atol=ATOL, rtol=0)


def test_patching_z_reproduces_clean_attn_out(family_model):
    model = family_model
    z, attn_out = f"blocks.{LAYER}.attn.z", f"blocks.{LAYER}.attn_out"
    clean = model.run(CLEAN, cache=[z, attn_out])
    patched = model.run(CORRUPT, cache=[attn_out], interventions=[gl.Patch(z, source=clean)])
    torch.testing.assert_close(patched.cache[attn_out], clean.cache[attn_out], atol=ATOL, rtol=0)


def test_patching_pattern_and_values_reproduces_clean_z(family_model):
    model = family_model
    names = [f"blocks.{LAYER}.attn.{s}" for s in ("pattern", "v", "z")]
    clean = model.run(CLEAN, cache=names)
    corrupt = model.run(CORRUPT, cache=names)
    assert not torch.allclose(corrupt.cache[names[2]], clean.cache[names[2]], atol=1e-3)
    patched = model.run(CORRUPT, cache=names, interventions=[gl.Patch(n, source=clean) for n in names[:2]])
    torch.testing.assert_close(patched.cache[names[0]], clean.cache[names[0]], atol=0, rtol=0)
    torch.testing.assert_close(patched.cache[names[2]], clean.cache[names[2]], atol=ATOL, rtol=0)


def test_patching_neurons_reproduces_clean_mlp_out(family_model):
    model = family_model
    post, mlp_out = f"blocks.{LAYER}.mlp.post", f"blocks.{LAYER}.mlp_out"
    clean = model.run(CLEAN, cache=[post, mlp_out])
    patched = model.run(CORRUPT, cache=[mlp_out], interventions=[gl.Patch(post, source=clean)])
    torch.testing.assert_close(patched.cache[mlp_out], clean.cache[mlp_out], atol=ATOL, rtol=0)


def test_patching_one_position_only_changes_that_position_and_later(family_model):
    model = family_model
    hook, position = f"blocks.{LAYER}.resid_pre", 5
    clean = model.run(CLEAN, cache=[hook])
    corrupt = logits(model, CORRUPT)
    patched = logits(model, CORRUPT, interventions=[gl.Patch(hook, source=clean, position=position)])
    torch.testing.assert_close(patched[:, :position], corrupt[:, :position], atol=1e-6, rtol=0)
    assert (patched[0, position] - corrupt[0, position]).abs().max() > 1e-3


def test_patch_source_of_one_prompt_broadcasts_over_the_batch(family_model):
    model = family_model
    hook = f"blocks.{LAYER}.resid_post"
    clean = model.run(CLEAN, cache=[hook])
    patched = logits(model, [CORRUPT, OTHER], interventions=[gl.Patch(hook, source=clean)])
    assert patched.shape[0] == 2
    for row in patched:
        torch.testing.assert_close(row, clean.logits[0], atol=ATOL, rtol=0)


def test_patch_source_can_be_a_tensor():
    model = tiny_model("qwen2")
    hook = f"blocks.{LAYER}.resid_pre"
    clean = model.run(CLEAN, cache=[hook])
    patched = logits(model, CORRUPT, interventions=[gl.Patch(hook, source=clean.cache[hook].clone())])
    torch.testing.assert_close(patched, clean.logits, atol=ATOL, rtol=0)


def test_wildcard_patch_and_mean_ablation_read_each_layers_own_activation():
    """A wildcard Patch / mean Ablate must look up each concrete hook name in the source's cache."""
    model = tiny_model("llama")
    clean = model.run(CLEAN, cache=["blocks.*.resid_pre"])
    by_hand = [gl.Patch(f"blocks.{L}.resid_pre", source=clean, position=3) for L in range(model.n_layers)]
    expected = logits(model, CORRUPT, interventions=by_hand)
    patched = logits(model, CORRUPT, interventions=[gl.Patch("blocks.*.resid_pre", source=clean, position=3)])
    torch.testing.assert_close(patched, expected, atol=ATOL, rtol=0)
    reference = model.run([CORRUPT, OTHER], cache=["blocks.*.mlp.post"])
    by_hand = [
        gl.Ablate(f"blocks.{L}.mlp.post", how="mean", reference=reference, neuron=5) for L in range(model.n_layers)
    ]
    expected = logits(model, CLEAN, interventions=by_hand)
    wildcard = gl.Ablate("blocks.*.mlp.post", how="mean", reference=reference, neuron=5)
    torch.testing.assert_close(logits(model, CLEAN, interventions=[wildcard]), expected, atol=ATOL, rtol=0)


# -- Add ---------------------------------------------------------------------------------------------
def test_add_on_resid_post_equals_a_hand_written_hf_hook(family_model):
    model = family_model
    vector, scale = random_vector(model), 2.5
    expected = with_block_output_hook(model, LAYER, lambda h: h + scale * vector, CLEAN)
    got = logits(model, CLEAN, interventions=[gl.Add(f"blocks.{LAYER}.resid_post", vector, scale=scale)])
    assert not torch.allclose(got, logits(model, CLEAN), atol=1e-3)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_add_at_one_position_leaves_earlier_positions_alone(family_model):
    model = family_model
    position = 6
    vector = random_vector(model, 1)

    def by_hand(h):
        h = h.clone()
        h[:, position] += 3.0 * vector
        return h

    expected = with_block_output_hook(model, LAYER, by_hand, CLEAN)
    baseline = logits(model, CLEAN)
    got = logits(
        model, CLEAN, interventions=[gl.Add(f"blocks.{LAYER}.resid_post", vector, scale=3.0, position=position)]
    )
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(got[:, :position], baseline[:, :position], atol=1e-6, rtol=0)
    assert (got[0, position] - baseline[0, position]).abs().max() > 1e-3


def test_negative_position_counts_from_each_prompts_end():
    model = tiny_model("gpt2")
    hook = f"blocks.{LAYER}.resid_post"
    prompts = ["the cat sat on the mat", "mary and john went to the store and gave a drink"]
    lengths = model.tokenize(prompts).attention_mask.sum(1).tolist()
    vector = random_vector(model, 2)
    run = model.run(prompts, cache=[hook], interventions=[gl.Add(hook, vector, position=-1)])
    base = model.run(prompts, cache=[hook])
    diff = (run.cache[hook] - base.cache[hook]).abs().amax(-1)
    for i, n in enumerate(lengths):
        assert diff[i].nonzero().flatten().tolist() == [n - 1]
        torch.testing.assert_close(run.cache[hook][i, n - 1], base.cache[hook][i, n - 1] + vector, atol=1e-6, rtol=0)


def test_per_head_add_takes_head_and_d_head_vector():
    model = tiny_model("llama")
    hook = f"blocks.{LAYER}.attn.z"
    vector = torch.randn(model.n_heads, model.d_head, generator=torch.Generator().manual_seed(3))
    base = model.run(CLEAN, cache=[hook]).cache[hook]
    run = model.run(CLEAN, cache=[hook], interventions=[gl.Add(hook, vector, scale=0.5)])
    torch.testing.assert_close(run.cache[hook], base + 0.5 * vector, atol=1e-6, rtol=0)


# -- Clamp, Replace, composition, wildcards -------------------------------------------------------------
def test_clamp_one_neuron_at_one_position_sets_exactly_that_element(family_model):
    model = family_model
    hook, neuron, position, value = f"blocks.{LAYER}.mlp.post", 7, 3, 4.25
    base = model.run(CLEAN, cache=[hook]).cache[hook]
    run = model.run(CLEAN, cache=[hook], interventions=[gl.Clamp(hook, value=value, neuron=neuron, position=position)])
    expected = base.clone()
    expected[:, position, neuron] = value
    assert torch.equal(run.cache[hook], expected)


def test_replace_on_resid_post_equals_applying_fn_by_hand(family_model):
    model = family_model

    def fn(h):
        return torch.tanh(h) * 2.0 - 0.5

    expected = with_block_output_hook(model, LAYER, fn, CLEAN)
    got = logits(model, CLEAN, interventions=[gl.Replace(f"blocks.{LAYER}.resid_post", fn=fn)])
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_interventions_compose_in_order(family_model):
    model = family_model
    hook = f"blocks.{LAYER}.resid_post"
    a, b = random_vector(model, 4), random_vector(model, 5)
    two = logits(model, CLEAN, interventions=[gl.Add(hook, a, scale=2.0), gl.Add(hook, b, scale=-1.0)])
    one = logits(model, CLEAN, interventions=[gl.Add(hook, 2.0 * a - b)])
    torch.testing.assert_close(two, one, atol=1e-4, rtol=0)
    # Order matters: a Clamp after an Add wins; an Add after a Clamp adds to the clamped value.
    clamp_last = logits(model, CLEAN, interventions=[gl.Add(hook, a), gl.Clamp(hook, value=0.5)])
    torch.testing.assert_close(
        clamp_last, logits(model, CLEAN, interventions=[gl.Clamp(hook, value=0.5)]), atol=ATOL, rtol=0
    )
    add_last = logits(model, CLEAN, interventions=[gl.Clamp(hook, value=0.5), gl.Add(hook, a)])
    expected = with_block_output_hook(model, LAYER, lambda h: torch.full_like(h, 0.5) + a, CLEAN)
    torch.testing.assert_close(add_last, expected, atol=ATOL, rtol=0)
    # The scope and the call compose too: scoped interventions first, then the call's.
    with model.intervene(gl.Add(hook, 2.0 * a)):
        scoped = logits(model, CLEAN, interventions=[gl.Add(hook, -b)])
    torch.testing.assert_close(scoped, one, atol=1e-4, rtol=0)


def test_wildcard_hook_applies_to_every_layer(family_model):
    model = family_model
    vector = random_vector(model, 6)
    handles = [
        block.register_forward_hook(
            lambda _m, _a, out: (out[0] + vector, *out[1:]) if isinstance(out, tuple) else out + vector
        )
        for block in model.blocks
    ]
    try:
        expected = hf_logits(model.hf, model, CLEAN)
    finally:
        for handle in handles:
            handle.remove()
    got = logits(model, CLEAN, interventions=[gl.Add("blocks.*.resid_post", vector)])
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    # And the wildcard really touched every layer: each cached resid_post moved by the vector.
    names = [f"blocks.{L}.resid_post" for L in range(model.n_layers)]
    run = model.run(CLEAN, cache=names, interventions=[gl.Clamp("blocks.*.resid_post", value=1.5)])
    for name in names:
        assert torch.all(run.cache[name] == 1.5)


# -- scope ---------------------------------------------------------------------------------------------
def test_scope_restores_bit_identical_outputs(family_model):
    model = family_model
    impl = model.hf.config._attn_implementation
    params = {k: v.clone() for k, v in model.hf.state_dict().items()}
    baseline = logits(model, CLEAN)
    hook = f"blocks.{LAYER}.resid_post"
    everything = [
        gl.Add(hook, random_vector(model), scale=3.0),
        gl.Ablate(f"blocks.{LAYER}.attn.z", head=0),
        gl.Clamp(f"blocks.{LAYER}.mlp.post", value=1.0, neuron=2),
        gl.Ablate("blocks.0.attn.pattern", head=1, key_position=0),
    ]
    with model.intervene(*everything) as scoped:
        assert scoped is model
        inside = logits(model, CLEAN)
        assert not torch.allclose(inside, baseline, atol=1e-3)
        # The scope also applies to runs that ask for other hooks.
        assert torch.equal(model.run(CLEAN, cache=["embed"]).logits, inside)
    assert_pristine(model, baseline, impl)
    for key, value in model.hf.state_dict().items():
        assert torch.equal(value, params[key]), key


def test_scope_is_undone_after_an_exception(family_model):
    model = family_model
    impl = model.hf.config._attn_implementation
    baseline = logits(model, CLEAN)
    scope = model.intervene(gl.Ablate(f"blocks.{LAYER}.resid_post"), gl.Ablate(f"blocks.{LAYER}.attn.z", head=1))
    with pytest.raises(RuntimeError, match="boom"), scope:
        logits(model, CLEAN)
        raise RuntimeError("boom")
    assert_pristine(model, baseline, impl)


def test_nested_scopes_stack_and_unwind():
    model = tiny_model("gemma3")
    impl = model.hf.config._attn_implementation
    baseline = logits(model, CLEAN)
    outer = gl.Add(f"blocks.{LAYER}.resid_post", random_vector(model, 8))
    inner = gl.Ablate("blocks.0.attn.z", head=0)
    only_outer = logits(model, CLEAN, interventions=[outer])
    both = logits(model, CLEAN, interventions=[outer, inner])
    with model.intervene(outer):
        assert torch.equal(logits(model, CLEAN), only_outer)
        with model.intervene(inner):
            assert torch.equal(logits(model, CLEAN), both)
        assert torch.equal(logits(model, CLEAN), only_outer)
        with pytest.raises(ValueError), model.intervene(inner):
            raise ValueError
        assert torch.equal(logits(model, CLEAN), only_outer)
    assert_pristine(model, baseline, impl)


def test_run_interventions_do_not_leak_into_the_next_run(family_model):
    model = family_model
    impl = model.hf.config._attn_implementation
    baseline = logits(model, CLEAN)
    for iv in (
        gl.Add(f"blocks.{LAYER}.resid_post", random_vector(model), scale=3.0),
        gl.Ablate(f"blocks.{LAYER}.attn.pattern", head=0),
        gl.Ablate(f"blocks.{LAYER}.attn.k", head=0),
        gl.Clamp("embed", value=0.1),
    ):
        changed = logits(model, CLEAN, interventions=[iv])
        assert not torch.allclose(changed, baseline, atol=1e-4), iv
        assert_pristine(model, baseline, impl)


# -- bad input -----------------------------------------------------------------------------------------
BAD_AT_RUN = {
    "head out of range": lambda m: gl.Ablate(f"blocks.{LAYER}.attn.z", head=m.n_heads),
    "kv head out of range": lambda m: gl.Ablate(f"blocks.{LAYER}.attn.v", head=m.n_kv_heads),
    "negative head": lambda m: gl.Ablate(f"blocks.{LAYER}.attn.z", head=-1),
    "neuron out of range": lambda m: gl.Clamp(f"blocks.{LAYER}.mlp.post", value=1.0, neuron=m.d_mlp),
    "neuron on resid_post": lambda m: gl.Ablate(f"blocks.{LAYER}.resid_post", neuron=0),
    "head on resid_post": lambda m: gl.Ablate(f"blocks.{LAYER}.resid_post", head=0),
    "key_position on z": lambda m: gl.Ablate(f"blocks.{LAYER}.attn.z", key_position=0),
    "neuron on pattern": lambda m: gl.Ablate(f"blocks.{LAYER}.attn.pattern", neuron=0),
    "intervene on logits": lambda m: gl.Ablate("logits"),
    "position past the end": lambda m: gl.Add(f"blocks.{LAYER}.resid_post", torch.ones(m.d_model), position=N_TOKENS),
    "negative position past the start": lambda m: gl.Ablate(f"blocks.{LAYER}.resid_post", position=-N_TOKENS - 1),
    "key_position past the end": lambda m: gl.Ablate(f"blocks.{LAYER}.attn.pattern", key_position=N_TOKENS + 3),
    "add vector of wrong shape": lambda m: gl.Add(f"blocks.{LAYER}.resid_post", torch.ones(m.d_model + 1)),
    "add per-head vector to resid": lambda m: gl.Add(f"blocks.{LAYER}.resid_post", torch.ones(m.n_heads, m.d_head)),
    "patch source did not cache": lambda m: gl.Patch(f"blocks.{LAYER}.resid_pre", source=m.run(CORRUPT)),
    "patch source too short": lambda m: gl.Patch(
        f"blocks.{LAYER}.resid_pre", source=m.run("the cat", cache=[f"blocks.{LAYER}.resid_pre"])
    ),
    "patch source batch mismatch": lambda m: gl.Patch(
        f"blocks.{LAYER}.resid_pre", source=m.run([CORRUPT, OTHER, CLEAN], cache=[f"blocks.{LAYER}.resid_pre"])
    ),
    "patch source is not a run": lambda m: gl.Patch(f"blocks.{LAYER}.resid_pre", source="not a run"),
    "mean ablation of a pattern": lambda m: gl.Ablate(
        f"blocks.{LAYER}.attn.pattern", how="mean", reference=m.run(CORRUPT, cache=[f"blocks.{LAYER}.attn.pattern"])
    ),
    "replace returns wrong shape": lambda m: gl.Replace(f"blocks.{LAYER}.resid_post", fn=lambda h: h[:, :1]),
    "replace returns non-tensor": lambda m: gl.Replace(f"blocks.{LAYER}.resid_post", fn=lambda h: 3.0),
    "replace makes logits infinite": lambda m: gl.Replace("ln_final", fn=lambda h: h * float("inf")),
}


def assert_one_line(error: BaseException) -> None:
    message = str(error)
    assert message and "\n" not in message, repr(message)


@pytest.mark.parametrize("case", sorted(BAD_AT_RUN))
def test_bad_interventions_raise_one_line_errors_and_leave_the_model_unchanged(case):
    model = tiny_model("llama")
    impl = model.hf.config._attn_implementation
    baseline = logits(model, [CLEAN, CORRUPT])
    baseline_single = logits(model, CLEAN)
    intervention = BAD_AT_RUN[case](model)
    with pytest.raises(gl.InputError) as info:
        model.run([CLEAN, CORRUPT], interventions=[intervention])
    assert_one_line(info.value)
    assert_pristine(model, baseline_single, impl)
    assert torch.equal(logits(model, [CLEAN, CORRUPT]), baseline)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: gl.Add(f"blocks.{LAYER}.resid_post", torch.full((m.d_model,), float("nan"))),
        lambda m: gl.Add(f"blocks.{LAYER}.resid_post", torch.ones(m.d_model), scale=float("inf")),
        lambda m: gl.Clamp(f"blocks.{LAYER}.resid_post", value=float("nan")),
        lambda m: gl.Ablate(f"blocks.{LAYER}.resid_post", how="median"),
        lambda m: gl.Ablate(f"blocks.{LAYER}.resid_post", how="mean"),
        lambda m: gl.Patch(f"blocks.{LAYER}.resid_post"),
        lambda m: gl.Replace(f"blocks.{LAYER}.resid_post", fn=None),
    ],
    ids=["add-nan", "add-inf-scale", "clamp-nan", "unknown-how", "mean-without-reference", "patch-no-source", "no-fn"],
)
def test_malformed_interventions_fail_at_construction(make):
    model = tiny_model("gpt2")
    with pytest.raises(gl.InputError) as info:
        make(model)
    assert_one_line(info.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: gl.Ablate(f"blocks.{LAYER}.attn.z", head=m.n_heads),
        lambda m: gl.Ablate(f"blocks.{LAYER}.resid_post", neuron=3),
        lambda m: gl.Ablate("blocks.*.mlp.post", neuron=m.d_mlp),
        lambda m: gl.Ablate("logits"),
        lambda m: gl.Ablate("blocks.99.resid_post"),
        lambda m: gl.Ablate("blocks.0.resid_middle"),
        lambda m: "not an intervention",
    ],
    ids=["head", "neuron-on-resid", "wildcard-neuron", "logits", "layer", "unknown-site", "not-intervention"],
)
def test_intervene_validates_before_entering_the_scope(make):
    model = tiny_model("mistral")
    impl = model.hf.config._attn_implementation
    baseline = logits(model, CLEAN)
    entered = False
    with pytest.raises(gl.GlasslabError) as info:  # noqa: SIM117 - the error may come from make() or intervene()
        with model.intervene(gl.Add("blocks.0.resid_post", torch.ones(model.d_model)), make(model)):
            entered = True
    assert not entered
    assert_one_line(info.value)
    assert_pristine(model, baseline, impl)
