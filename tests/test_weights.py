"""Canonical weights (glasslab/model/weights.py) against each family's own modules and hooks.

Every check computes the same quantity twice: once by running the Hugging Face module (or reading a hook),
once as ``x @ W + b`` from the canonical weights. A wrong orientation, head split or fused layout fails.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import glasslab as gl
from glasslab.errors import InputError, UnsupportedModelError
from glasslab.methods.attribute.dla import neuron_out_weights
from glasslab.model.architectures import architecture_for
from glasslab.model.weights import NORMS, SHAPES

from .tiny import FAMILIES, tiny_hf, tiny_model, word_tokenizer
from .tolerance import slack

LAYER = 1


def close(mine: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    mine, theirs = mine.double(), theirs.double()
    torch.testing.assert_close(mine, theirs, rtol=0, atol=slack(theirs, 1e-5), msg=what)


def fresh_model(family: str) -> gl.Model:
    """A private copy of the tiny model, for tests that write weights."""
    hf = copy.deepcopy(tiny_hf(family))
    return gl.Model(hf, word_tokenizer(), architecture_for(hf.config.model_type), name=f"tiny-{family}")


def random(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def tokens() -> torch.Tensor:
    """Distinct first tokens, so position 0 (where rotary embeddings are the identity) has 8 different rows."""
    return torch.randint(4, 37, (8, 5), generator=torch.Generator().manual_seed(1))


def affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pattern: str) -> torch.Tensor:
    out = torch.einsum(pattern, x.double(), weight.double())
    return out if bias is None else out + bias.double()


# -- projections probed through the model: (input, the module's output), both canonical-shaped -------------
def qkv_probe(model: gl.Model, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(normed resid_pre [rows, d_model], the model's q/k/v [rows, heads, d_head]). q and k are read before
    any q/k-norm (its input) or, without one, at position 0 (where rotary embeddings are the identity)."""
    norm_path = getattr(model.arch, f"{which.lower()}_norm", None) if which != "V" else None
    captured = []
    handle = None
    if norm_path is not None:
        norm = model.block_module(LAYER, norm_path)
        handle = norm.register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach()))
    try:
        run = model.run(tokens(), cache=[f"blocks.{LAYER}.resid_pre", f"blocks.{LAYER}.attn.{which.lower()}"])
    finally:
        if handle is not None:
            handle.remove()
    with torch.no_grad():
        normed = model.block_module(LAYER, model.arch.attn_norm)(run.cache[f"blocks.{LAYER}.resid_pre"])
    if captured:  # [batch, pos, head, d_head], or [batch, head, pos, d_head] (Gemma 3 norms after transposing)
        act = captured[0] if captured[0].shape[1] == normed.shape[1] else captured[0].transpose(1, 2)
        return normed.flatten(0, 1), act.flatten(0, 1)
    return normed[:, 0], run.cache[f"blocks.{LAYER}.attn.{which.lower()}"][:, 0]


def predicted_qkv(model: gl.Model, which: str, x: torch.Tensor) -> torch.Tensor:
    weight = model.weights.read(f"W_{which}", LAYER)
    return affine(x, weight, model.weights.get(f"b_{which}", LAYER), "nd,hde->nhe")


def module_probe(model: gl.Model, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(random input, the module's output) for W_O, W_in, W_gate, W_out, W_U."""
    arch = model.arch
    if name == "W_O":
        z = random(6, model.n_heads, model.d_head)
        return z, model.block_module(LAYER, arch.attn_out_proj)(z.flatten(-2))
    path, width = {
        "W_in": (arch.mlp_in_proj, model.d_model),
        "W_gate": (arch.mlp_gate_proj, model.d_model),
        "W_out": (arch.mlp_out_proj, model.d_mlp),
        "W_U": (arch.unembed, model.d_model),
    }[name]
    x = random(6, width)
    module = model.module(path) if name == "W_U" else model.block_module(LAYER, path)
    return x, module(x)


def predicted(model: gl.Model, name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "W_O":
        return affine(x, model.weights.W_O(LAYER), model.weights.get("b_O", LAYER), "nhd,hdm->nm")
    layer = None if name == "W_U" else LAYER
    bias = model.weights.get("b" + name[1:], layer)
    return affine(x, model.weights.read(name, layer), bias, "nd,de->ne")


def module_names(model: gl.Model) -> list[str]:
    return ["W_O", "W_in", "W_out", "W_U"] + (["W_gate"] if model.arch.mlp_gate_proj else [])


# -- accessors against the modules ----------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_q_k_v_reproduce_the_models_own(family):
    model = tiny_model(family)
    for which in "QKV":
        x, theirs = qkv_probe(model, which)
        close(predicted_qkv(model, which, x), theirs, f"{family} {which}")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_output_mlp_and_unembedding_weights_reproduce_the_modules(family):
    model = tiny_model(family)
    with torch.no_grad():
        for name in module_names(model):
            x, theirs = module_probe(model, name)
            close(predicted(model, name, x), theirs, f"{family} {name}")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_shapes_are_the_declared_ones(family):
    model = tiny_model(family)
    sizes = {
        "vocab": model.vocab_size,
        "d_model": model.d_model,
        "d_head": model.d_head,
        "d_mlp": model.d_mlp,
        "head": model.n_heads,
        "kv_head": model.n_kv_heads,
        "n_ctx": model.context_length,
    }
    for name in model.weights.names():
        layer = None if name in ("W_E", "W_pos", "W_U", "b_U") else 0
        expected = tuple(sizes[d] for d in SHAPES[name].strip("[]").split(", "))
        assert tuple(model.weights.read(name, layer).shape) == expected, name


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_embedding_and_unembedding_reproduce_the_hooks(family):
    model = tiny_model(family)
    ids = tokens()
    run = model.run(ids, cache=["embed", "ln_final"])
    close(model.weights.W_E()[ids], run.cache["embed"], f"{family} W_E")
    if not getattr(model.config, "final_logit_softcapping", None):
        logits = affine(run.cache["ln_final"], model.weights.W_U(), model.weights.get("b_U"), "bpd,dv->bpv")
        close(logits, run.logits, f"{family} W_U")
    if model.weights.has("W_pos"):
        with torch.no_grad():
            close(model.weights.W_pos()[:5], model.module(model.arch.pos_embed)(torch.arange(5)), "W_pos")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_norm_weights_reproduce_the_norm_modules(family):
    model = tiny_model(family)
    for name in NORMS:
        path = model.arch.final_norm if name == "final_norm" else getattr(model.arch, name)
        if path is None:
            continue
        layer = None if name == "final_norm" else LAYER
        module = model.module(path) if layer is None else model.block_module(layer, path)
        params = model.weights.norm(name, layer)
        x = random(6, params.weight.shape[-1]) * 3 + 1
        mine = params.linear(x, params.scale(x)) + (params.bias if params.bias is not None else 0.0)
        with torch.no_grad():
            close(mine, module(x), f"{family} {name}")


@pytest.mark.parametrize("family", ["llama", "gemma", "gpt2"])
def test_expanded_keys_and_values_follow_the_query_heads(family):
    model = tiny_model(family)
    group = model.n_heads // model.n_kv_heads
    for name in ("W_K", "W_V"):
        expanded = model.weights.read(name, LAYER, expand=True)
        assert expanded.shape[0] == model.n_heads
        for head in range(model.n_heads):
            assert torch.equal(expanded[head], model.weights.read(name, LAYER, head // group))


# -- writing ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_canonical_delta_changes_the_modules_forward_by_x_delta(family):
    model = fresh_model(family)
    for which in "QKV":
        name = f"W_{which}"
        x, before = qkv_probe(model, which)
        delta = 0.1 * random(*model.weights.read(name, LAYER).shape, seed=2)
        model.weights.add_(name, delta, layer=LAYER)
        _, after = qkv_probe(model, which)
        change = torch.einsum("nd,hde->nhe", x.double(), delta.double())
        close(after.double() - before.double(), change, f"{family} {name}")
    with torch.no_grad():
        for name in module_names(model):
            x, before = module_probe(model, name)
            layer = None if name == "W_U" else LAYER
            delta = 0.1 * random(*model.weights.read(name, layer).shape, seed=3)
            model.weights.add_(name, delta, layer=layer)
            _, after = module_probe(model, name)
            pattern = "nhd,hdm->nm" if name == "W_O" else "nd,de->ne"
            close(after.double() - before.double(), torch.einsum(pattern, x.double(), delta.double()), name)


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama"])
def test_module_layout_round_trips(family):
    model = tiny_model(family)
    for name in ("W_Q", "W_V", "W_O", "W_out", "b_Q"):
        if not model.weights.has(name):
            continue
        canonical = random(*model.weights.read(name, 0).shape, seed=4)
        stored = model.weights.to_module_layout(name, canonical)
        assert stored.shape == model.weights.parameter(name, 0).shape
        assert torch.equal(model.weights.from_module_layout(name, stored), canonical)
        assert float(stored.abs().sum()) == pytest.approx(float(canonical.abs().sum()), rel=1e-5)  # zeros elsewhere


def test_older_names_read_the_canonical_weights():
    model = tiny_model("gpt2")
    assert torch.equal(model.output_weights(2), model.weights.W_O(2))
    with pytest.warns(DeprecationWarning, match=r"model\.weights\.W_out\(layer\)"):
        assert torch.equal(neuron_out_weights(model, 1), model.weights.W_out(1))


def test_an_entry_with_the_wrong_number_of_qkv_paths_is_refused():
    with pytest.raises(UnsupportedModelError, match="needs 1 qkv_proj path"):
        dataclasses.replace(architecture_for("gpt2"), qkv_layout="fused_per_head", qkv_proj=("a", "b", "c"))


# -- errors ---------------------------------------------------------------------------------------------
def test_clear_errors_for_wrong_layers_heads_and_missing_weights():
    gpt2, llama = tiny_model("gpt2"), tiny_model("llama")
    with pytest.raises(InputError, match=r"layer 7 is out of range \(valid: 0..2\)"):
        gpt2.weights.W_Q(7)
    with pytest.raises(InputError, match="per layer"):
        gpt2.weights.W_O(None)
    with pytest.raises(InputError, match=r"head 4 is out of range for W_Q \(valid: 0..3\)"):
        gpt2.weights.W_Q(0, 4)
    with pytest.raises(InputError, match=r"head 2 is out of range for W_K \(valid: 0..1\)"):
        llama.weights.W_K(0, 2)
    assert llama.weights.W_K(0, 3, expand=True).shape == (llama.d_model, llama.d_head)
    with pytest.raises(InputError, match="has no W_gate: its MLP is not gated"):
        gpt2.weights.W_gate(0)
    with pytest.raises(InputError, match="has no b_Q: its projection has no bias"):
        llama.weights.b_Q(0)
    with pytest.raises(InputError, match="has no q_norm"):
        llama.weights.q_norm(0)
    with pytest.raises(InputError, match="did you mean W_out"):
        gpt2.weights.read("W_ou", 0)
    with pytest.raises(InputError, match="no heads"):
        gpt2.weights.read("W_in", 0, 1)
    with pytest.raises(InputError, match="whole model"):
        gpt2.weights.read("W_U", 0)
    with pytest.raises(InputError, match="embedding scale"):
        tiny_model("gemma").weights.add_("W_E", torch.zeros(1))
    assert llama.weights.get("b_Q", 0) is None and gpt2.weights.get("W_gate", 0) is None
    assert "W_gate" in llama.weights.names() and "W_gate" not in gpt2.weights.names()
