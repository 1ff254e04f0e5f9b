"""Generation with and without interventions, checked against a manual loop of full forward passes.

``model.generate`` goes through Hugging Face ``generate`` with its key/value cache, so each new token's
forward pass sees one position. The reference here re-runs the whole sequence with ``model.run`` for
every token (no cache) and takes the argmax, so agreement checks that interventions reach generated
positions, at the right absolute positions, exactly as they would in a full pass.
"""

from __future__ import annotations

import pytest
import torch

import glasslab as gl
from glasslab.model import attention

from .tiny import tiny_model
from .tolerance import assert_greedy

PROMPT = "the cat sat on the mat and the dog ran"  # 11 tokens with BOS
PROMPT_LEN = 11
N_NEW = 6
LAYER = 1


def assert_greedy_by_full_pass(
    model: gl.Model, prompt: str, generation, interventions=(), n: int | None = None
) -> None:
    """Each generated token (the first ``n``) is the greedy choice of one full forward pass (no key/value cache)
    over the prompt and the tokens before it: one causal pass gives every step's logits at once. Compared up to
    float rounding (tests/tolerance.py): the cache and the full pass may break a near-tie either way."""
    new = generation.new_token_ids[:n]
    ids = torch.cat([model.to_tokens(prompt), torch.tensor([new])], dim=1)
    start = ids.shape[1] - len(new) - 1
    logits = model.run(ids, interventions=interventions).logits[0, start : start + len(new)]
    assert_greedy(logits, new)
    eos = model.tokenizer.eos_token_id
    assert eos not in new[:-1]  # it stops after EOS, as Hugging Face does


def manual_sample(model: gl.Model, prompt: str, n: int, temperature: float, seed: int) -> list[str]:
    """Plain multinomial sampling from softmax(logits / T) with the global RNG seeded once."""
    ids = model.to_tokens(prompt)
    new = []
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        for _ in range(n):
            probs = torch.softmax(model.run(ids).logits[0, -1].double() / temperature, dim=-1).float()
            token = int(torch.multinomial(probs, 1))
            new.append(token)
            if token == model.tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    finally:
        torch.set_rng_state(state)
    return [model.tokenizer.decode([i]) for i in new]


def hooks_left(model: gl.Model) -> list[str]:
    """glasslab's hooks and attention state still on the model. Transformers' own output-capturing hooks are
    not counted: it installs them once, on a model's first call that asks for attentions or hidden states
    (another test may make that call first on the shared tiny model), and keeps them."""
    left = []
    for name, module in model.hf.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks"):
            hooks = getattr(module, attr, {}).values()
            if any(not getattr(hook, "__module__", "").startswith("transformers.") for hook in hooks):
                left.append(f"{name or '<root>'}.{attr}")
    ids = {id(m) for m in model.hf.modules()}
    left += ["attention switch"] if attention.is_switched(model.hf) else []
    return left + [f"attention handler {key}" for key in attention.HANDLERS.get() if key in ids]


def vector(model: gl.Model, seed: int = 0) -> torch.Tensor:
    return torch.randn(model.d_model, generator=torch.Generator().manual_seed(seed))


def add_at_absolute(model: gl.Model, hook_layer: int, position: int, v: torch.Tensor, scale: float):
    """A Replace that adds ``scale * v`` at absolute ``position`` of a full sequence (reference only)."""

    def fn(h):
        h = h.clone()
        if h.shape[1] > position:
            h[:, position] += scale * v
        return h

    return gl.Replace(f"blocks.{hook_layer}.resid_post", fn=fn)


# name -> (interventions for generate, interventions for the manual full-pass loop)
CASES = {
    "none": lambda m: ([], []),
    "add-every-position": lambda m: (
        [gl.Add(f"blocks.{LAYER}.resid_post", vector(m), scale=3.0)],
        [gl.Add(f"blocks.{LAYER}.resid_post", vector(m), scale=3.0)],
    ),
    "ablate-head-at-position-1": lambda m: (
        [gl.Ablate(f"blocks.{LAYER}.attn.z", head=1, position=1)],
        [gl.Ablate(f"blocks.{LAYER}.attn.z", head=1, position=1)],
    ),
    "ablate-head-every-position": lambda m: (
        [gl.Ablate("blocks.*.attn.z", head=0)],
        [gl.Ablate("blocks.*.attn.z", head=0)],
    ),
    # -1 is the prompt's last token, once: in the loop that is the absolute position PROMPT_LEN - 1.
    "add-last-prompt-token": lambda m: (
        [gl.Add(f"blocks.{LAYER}.resid_post", vector(m, 1), scale=5.0, position=-1)],
        [gl.Add(f"blocks.{LAYER}.resid_post", vector(m, 1), scale=5.0, position=PROMPT_LEN - 1)],
    ),
    # An absolute position among the generated tokens (the third new token's forward pass).
    "add-at-generated-position": lambda m: (
        [gl.Add(f"blocks.{LAYER}.resid_post", vector(m, 2), scale=5.0, position=PROMPT_LEN + 2)],
        [add_at_absolute(m, LAYER, PROMPT_LEN + 2, vector(m, 2), 5.0)],
    ),
    "clamp-neurons-every-position": lambda m: (
        [gl.Clamp("blocks.*.mlp.post", value=2.0, neuron=[0, 1, 2, 3])],
        [gl.Clamp("blocks.*.mlp.post", value=2.0, neuron=[0, 1, 2, 3])],
    ),
    "ablate-values-every-position": lambda m: (
        [gl.Ablate("blocks.*.attn.v", head=0)],
        [gl.Ablate("blocks.*.attn.v", head=0)],
    ),
    # Keys and pattern columns are indexed by absolute key position, also in cached decoding steps.
    "ablate-key-position-3": lambda m: (
        [gl.Ablate("blocks.*.attn.pattern", key_position=PROMPT_LEN - 3)],
        [gl.Ablate("blocks.*.attn.pattern", key_position=PROMPT_LEN - 3)],
    ),
    "clamp-values-at-position": lambda m: (
        [gl.Clamp("blocks.*.attn.v", value=3.0, position=PROMPT_LEN - 2)],
        [gl.Clamp("blocks.*.attn.v", value=3.0, position=PROMPT_LEN - 2)],
    ),
    "ablate-keys-at-last-prompt-token": lambda m: (
        [gl.Ablate("blocks.*.attn.k", position=-1)],
        [gl.Ablate("blocks.*.attn.k", position=PROMPT_LEN - 1)],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_greedy_generation_equals_a_manual_loop_of_full_passes(family_model, case):
    model = family_model
    for_generate, for_loop = CASES[case](model)
    generation = model.generate(PROMPT, max_new_tokens=N_NEW, interventions=for_generate)
    assert generation.prompt_tokens == PROMPT_LEN
    assert_greedy_by_full_pass(model, PROMPT, generation, for_loop)
    assert hooks_left(model) == []


def test_interventions_change_the_generation_and_the_reference_agrees():
    """Guards the test above against vacuous passes: the intervention must matter for the tokens."""
    model = tiny_model("llama")
    plain = model.generate(PROMPT, max_new_tokens=N_NEW).new_tokens
    steer = [gl.Add("blocks.*.resid_post", vector(model, 9), scale=6.0)]
    steered = model.generate(PROMPT, max_new_tokens=N_NEW, interventions=steer)
    assert steered.new_tokens != plain
    assert_greedy_by_full_pass(model, PROMPT, steered, steer)
    with pytest.raises(AssertionError):  # the reference tells the two apart
        assert_greedy_by_full_pass(model, PROMPT, steered)
    assert model.generate(PROMPT, max_new_tokens=N_NEW).new_tokens == plain


def test_generation_inside_a_scope_equals_passing_interventions(family_model):
    model = family_model
    interventions = [
        gl.Add(f"blocks.{LAYER}.resid_post", vector(model, 3), scale=4.0),
        gl.Ablate("blocks.0.attn.z", head=2, position=[1, 2]),
    ]
    baseline = model.generate(PROMPT, max_new_tokens=N_NEW)
    passed = model.generate(PROMPT, max_new_tokens=N_NEW, interventions=interventions)
    with model.intervene(*interventions):
        scoped = model.generate(PROMPT, max_new_tokens=N_NEW)
    assert scoped.new_tokens == passed.new_tokens
    assert scoped.completion == passed.completion
    after = model.generate(PROMPT, max_new_tokens=N_NEW)
    assert after == baseline
    assert hooks_left(model) == []


def test_generation_does_not_leave_anything_behind(family_model):
    model = family_model
    impl = model.hf.config._attn_implementation
    baseline = model.run(PROMPT).logits
    model.generate(
        PROMPT,
        max_new_tokens=N_NEW,
        interventions=[gl.Ablate(f"blocks.{LAYER}.attn.pattern", head=0), gl.Clamp("embed", value=0.2, position=3)],
    )
    assert hooks_left(model) == []
    assert model._active == []
    assert model.hf.config._attn_implementation == impl
    assert torch.equal(model.run(PROMPT).logits, baseline)


def test_greedy_generation_matches_hugging_face_generate_without_glasslab():
    model = tiny_model("gpt2")
    tokens = model.tokenize(PROMPT)
    with torch.no_grad():
        out = model.hf.generate(
            input_ids=tokens.input_ids,
            attention_mask=tokens.attention_mask,
            do_sample=False,
            max_new_tokens=N_NEW,
            pad_token_id=model.pad_token_id,
        )
    expected = [model.tokenizer.decode([i]) for i in out[0, PROMPT_LEN:].tolist()]
    assert model.generate(PROMPT, max_new_tokens=N_NEW).new_tokens == expected


# -- sampling ------------------------------------------------------------------------------------------
def test_seeded_sampling_is_repeatable_and_leaves_the_global_rng_alone(family_model):
    model = family_model
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    first = model.generate(PROMPT, max_new_tokens=N_NEW, temperature=1.5, seed=11)
    assert torch.equal(torch.get_rng_state(), before)
    second = model.generate(PROMPT, max_new_tokens=N_NEW, temperature=1.5, seed=11)
    assert torch.equal(torch.get_rng_state(), before)
    assert first.new_tokens == second.new_tokens
    assert first.completion == second.completion
    assert first.seed == 11 and first.temperature == 1.5
    # With interventions too.
    steer = [gl.Add(f"blocks.{LAYER}.resid_post", vector(model, 4), scale=2.0)]
    third = model.generate(PROMPT, max_new_tokens=N_NEW, temperature=1.5, seed=11, interventions=steer)
    fourth = model.generate(PROMPT, max_new_tokens=N_NEW, temperature=1.5, seed=11, interventions=steer)
    assert third.new_tokens == fourth.new_tokens
    assert torch.equal(torch.get_rng_state(), before)


def test_seeded_sampling_draws_from_the_models_distribution():
    model = tiny_model("qwen2")
    got = [model.generate(PROMPT, max_new_tokens=N_NEW, temperature=2.0, seed=s).new_tokens for s in range(6)]
    assert len({tuple(g) for g in got}) > 1, "different seeds should give different samples at T=2"
    for s, tokens in enumerate(got):
        assert tokens == manual_sample(model, PROMPT, N_NEW, 2.0, s)


# -- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(max_new_tokens=0),
        dict(max_new_tokens=-3),
        dict(max_new_tokens=4097),
        dict(max_new_tokens=60),  # 11 + 60 > the tiny models' 64 positions
        dict(temperature=-0.5),
        dict(temperature=1.0, top_p=0.0),
        dict(temperature=1.0, top_p=1.5),
        dict(interventions=[gl.Ablate("blocks.1.attn.z", head=99)]),
        dict(interventions=[gl.Ablate("blocks.1.resid_post", neuron=0)]),
        dict(interventions=[gl.Add("blocks.1.resid_post", torch.ones(5))]),
        dict(interventions=[gl.Ablate("blocks.1.resid_post", position=PROMPT_LEN + 4)]),
        dict(interventions=[gl.Ablate("blocks.1.resid_post", position=-PROMPT_LEN - 1)]),
    ],
    ids=lambda kw: ",".join(f"{k}={v!r}"[:40] for k, v in kw.items()),
)
def test_bad_generation_arguments_raise_one_line_errors(kwargs):
    model = tiny_model("llama")
    impl = model.hf.config._attn_implementation
    baseline = model.run(PROMPT).logits
    plain = model.generate(PROMPT, max_new_tokens=3)
    kwargs = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(gl.InputError) as info:
        model.generate(PROMPT, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    assert hooks_left(model) == []
    assert model.hf.config._attn_implementation == impl
    assert torch.equal(model.run(PROMPT).logits, baseline)
    assert model.generate(PROMPT, max_new_tokens=3) == plain


def test_generate_rejects_an_empty_prompt():
    with pytest.raises(gl.InputError):
        tiny_model("gpt2").generate("", max_new_tokens=2)


# -- the real default model ----------------------------------------------------------------------------
@pytest.mark.slow
def test_steering_changes_the_real_models_continuation_and_is_undone(default_model):
    model = default_model
    prompt = "The capital of France is"
    layer = model.n_layers // 2
    hook = f"blocks.{layer}.resid_post"
    baseline_logits = model.run(prompt).logits
    baseline = model.generate(prompt, max_new_tokens=8)
    # A steering vector: the difference of two prompts' residual streams at this layer, made large.
    love = model.run("I love love love you so much", cache=[hook]).cache[hook][0, -1]
    hate = model.run("I hate hate hate you so much", cache=[hook]).cache[hook][0, -1]
    direction = love - hate
    steer = [gl.Add(hook, direction / direction.norm() * baseline_logits.new_tensor(1.0), scale=200.0)]
    steered = model.generate(prompt, max_new_tokens=8, interventions=steer)
    assert steered.completion != baseline.completion
    # The cached generation applies the vector at generated positions as a full pass would.
    assert_greedy_by_full_pass(model, prompt, steered, steer, n=4)
    with model.intervene(*steer):
        assert model.generate(prompt, max_new_tokens=8).completion == steered.completion
    # Fully undone.
    assert model.generate(prompt, max_new_tokens=8) == baseline
    assert torch.equal(model.run(prompt).logits, baseline_logits)
    assert hooks_left(model) == []
