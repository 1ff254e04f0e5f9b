"""The hook vocabulary: canonical names, wildcards, and one-line errors for names a model lacks."""

from __future__ import annotations

import pytest

import glasslab as gl

from .tiny import tiny_model

SITES = [
    "resid_pre",
    "resid_mid",
    "resid_post",
    "attn_out",
    "mlp_out",
    "mlp.in",
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.pattern",
    "attn.z",
    "attn.head_out",
    "mlp.post",
]
PARALLEL = {"gpt_neox"}  # tiny families built with use_parallel_residual=True


def family_of(model: gl.Model) -> str:
    return model.name.removeprefix("tiny-")


def test_hooks_lists_the_canonical_vocabulary(family_model):
    names = family_model.hooks()
    n_layers = family_model.hf.config.num_hidden_layers
    assert n_layers == 3 == family_model.n_layers
    parallel = family_of(family_model) in PARALLEL
    assert family_model.parallel_residual is parallel
    sites = [s for s in SITES if not (parallel and s == "resid_mid")]
    expected = {"embed", "ln_final", "logits"} | {f"blocks.{layer}.{s}" for layer in range(n_layers) for s in sites}
    assert set(names) == expected
    assert len(names) == len(expected)  # no repeats
    assert names[0] == "embed" and names[-2:] == ["ln_final", "logits"]
    # forward order: all of layer L before anything of layer L+1
    layers = [int(name.split(".")[1]) for name in names if name.startswith("blocks.")]
    assert layers == sorted(layers)
    # every listed name is accepted by a run
    run = family_model.run("the cat", cache=names)
    assert set(run.cache) == set(names)


def test_parallel_residual_has_no_resid_mid_and_says_why():
    model = tiny_model("gpt_neox")
    assert model.parallel_residual
    assert not any(name.endswith("resid_mid") for name in model.hooks())
    for call in (
        lambda: model.run("the cat", cache=["blocks.0.resid_mid"]),
        lambda: model.hook_spec("blocks.1.resid_mid"),
        lambda: model.expand_hooks("blocks.2.resid_mid"),
    ):
        with pytest.raises(gl.HookNameError) as info:
            call()
        message = str(info.value)
        assert "parallel" in message and "resid_mid" in message
        assert "\n" not in message
    # a wildcard over resid_mid matches nothing on a parallel-residual model
    with pytest.raises(gl.HookNameError):
        model.expand_hooks("blocks.*.resid_mid")


def test_sequential_neox_has_resid_mid():
    model = tiny_model("gpt_neox_sequential")
    assert not model.parallel_residual
    assert "blocks.0.resid_mid" in model.hooks()
    run = model.run("the cat", cache=["blocks.0.resid_mid"])
    assert list(run.cache) == ["blocks.0.resid_mid"]


def test_wildcards_expand_in_forward_order(family_model):
    n = family_model.n_layers
    assert family_model.expand_hooks("blocks.*.resid_post") == [f"blocks.{layer}.resid_post" for layer in range(n)]
    # order follows the model, not the request; repeats collapse
    mixed = family_model.expand_hooks(["logits", "blocks.2.mlp_out", "blocks.*.resid_post", "embed", "embed"])
    resid_post = [f"blocks.{layer}.resid_post" for layer in range(n)]
    assert set(mixed) == {"embed", "logits", "blocks.2.mlp_out", *resid_post} and len(mixed) == n + 3
    assert mixed == [name for name in family_model.hooks() if name in set(mixed)]
    assert mixed[0] == "embed" and mixed[-1] == "logits"
    assert [name for name in mixed if name.endswith("resid_post")] == resid_post
    attn = family_model.expand_hooks("blocks.1.attn.*")
    assert attn == [f"blocks.1.attn.{s}" for s in ("q", "k", "v", "pattern", "z", "head_out")]
    assert family_model.expand_hooks("*") == family_model.hooks()
    assert family_model.expand_hooks("blocks.[01].resid_pre") == ["blocks.0.resid_pre", "blocks.1.resid_pre"]
    run = family_model.run("the cat sat", cache="blocks.*.resid_post")
    assert list(run.cache) == [f"blocks.{layer}.resid_post" for layer in range(n)]


@pytest.mark.parametrize(
    "bad, suggestion",
    [
        ("blocks.0.resid_psot", "resid_post"),
        ("blocks.1.attn.patern", "attn.pattern"),
        ("blocks.2.mlp_outt", "mlp_out"),
        ("embeds", "embed"),
        ("ln_finl", "ln_final"),
    ],
)
def test_unknown_name_suggests_close_names(bad, suggestion):
    model = tiny_model("llama")
    with pytest.raises(gl.HookNameError) as info:
        model.run("the cat", cache=[bad])
    message = str(info.value)
    assert bad in message
    assert suggestion in message.split("did you mean", 1)[1]
    assert "\n" not in message
    assert not message.startswith(("'", '"'))  # not KeyError's quoting
    assert isinstance(info.value, gl.GlasslabError) and isinstance(info.value, KeyError)


def test_unknown_names_without_close_match_and_bad_patterns():
    model = tiny_model("llama")
    with pytest.raises(gl.HookNameError) as info:
        model.expand_hooks("zzzzzz")
    assert "zzzzzz" in str(info.value) and "model.hooks()" in str(info.value)
    with pytest.raises(gl.HookNameError) as info:
        model.run("the cat", cache=["blocks.*.resid_psot"])
    assert "resid_post" in str(info.value)
    for bad in ("blocks.x.resid_post", "blocks.0", "blocks..resid_post", "resid_post", ""):
        with pytest.raises(gl.HookNameError):
            model.hook_spec(bad)


def test_layer_out_of_range_is_a_clear_error(family_model):
    n = family_model.n_layers
    with pytest.raises(gl.HookNameError) as info:
        family_model.run("the cat", cache=[f"blocks.{n}.resid_post"])
    message = str(info.value)
    assert f"layer {n}" in message and f"0..{n - 1}" in message
    assert "\n" not in message
    with pytest.raises(gl.HookNameError):
        family_model.hook_spec("blocks.99.attn.q")
    # a wildcard never reaches past the last layer
    assert family_model.expand_hooks("blocks.*.attn_out")[-1] == f"blocks.{n - 1}.attn_out"


def test_hook_spec_layouts():
    model = tiny_model("llama")
    expected = {
        "embed": ("resid", None),
        "blocks.1.resid_pre": ("resid", 1),
        "blocks.2.attn.q": ("query_heads", 2),
        "blocks.0.attn.k": ("kv_heads", 0),
        "blocks.0.attn.v": ("kv_heads", 0),
        "blocks.0.attn.pattern": ("pattern", 0),
        "blocks.0.attn.z": ("query_heads", 0),
        "blocks.0.attn.head_out": ("query_heads", 0),
        "blocks.0.mlp.post": ("neurons", 0),
        "ln_final": ("resid", None),
        "logits": ("logits", None),
    }
    for name, (layout, layer) in expected.items():
        spec = model.hook_spec(name)
        assert (spec.name, spec.layout, spec.layer) == (name, layout, layer)
    assert model.index_sizes(model.hook_spec("blocks.0.attn.k")) == {"head": 2}  # llama tiny has 2 kv heads
    assert model.index_sizes(model.hook_spec("blocks.0.attn.q")) == {"head": 4}
    assert model.index_sizes(model.hook_spec("blocks.0.mlp.post")) == {"neuron": 64}


def test_missing_cache_entry_says_what_was_cached():
    model = tiny_model("llama")
    run = model.run("the cat", cache=["blocks.0.resid_post"])
    with pytest.raises(gl.HookNameError) as info:
        run.cache["blocks.1.resid_post"]
    message = str(info.value)
    assert "blocks.0.resid_post" in message and "cache=['blocks.1.resid_post']" in message
    assert "\n" not in message
