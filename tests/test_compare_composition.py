"""Head composition: weights read per family reproduce the model's own q/k/v, folding matches the norms,
scores equal the direct formula on explicit [d_model, d_model] products, and TransformerLens agrees."""

from __future__ import annotations

import pytest
import torch

from glasslab.errors import InputError
from glasslab.methods.compare.composition import (
    composition_score,
    factored_score,
    head_composition,
    head_weights,
    input_norm,
    random_baseline,
)
from glasslab.methods.observe.head_roles import head_roles
from glasslab.model.norms import norm_params
from glasslab.views.html import figure_html

from .tiny import FAMILIES, tiny_hf, tiny_model

PROMPT = "when mary and john went to the store john gave a drink to"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_head_weights_reproduce_the_models_q_k_v(family):
    """v at every position; q and k at position 0, where rotary embeddings are the identity."""
    model = tiny_model(family)
    layer = 1
    run = model.run(PROMPT, cache=[f"blocks.{layer}.resid_pre", f"blocks.{layer}.attn.*"])
    w = head_weights(model, layer)
    attn = model.block_module(layer, model.arch.attn)
    with torch.no_grad():
        normed = input_norm(model, layer)(run.cache[f"blocks.{layer}.resid_pre"][0]).double()  # [pos, d]
    for site, weights, bias, norm_name in (
        ("v", w.v, w.v_bias, None),
        ("q", w.q, w.q_bias, "q_norm"),
        ("k", w.k, w.k_bias, "k_norm"),
    ):
        mine = torch.einsum("pd,hde->phe", normed, weights)
        if bias is not None:
            mine = mine + bias
        norm = getattr(attn, norm_name, None) if norm_name else None
        if norm is not None:
            with torch.no_grad():
                mine = norm(mine.float()).double()
        hooked = run.cache[f"blocks.{layer}.attn.{site}"][0].double()
        rows = slice(None) if site == "v" else slice(0, 1)
        torch.testing.assert_close(mine[rows], hooked[rows], atol=1e-5, rtol=1e-4, msg=f"{family} {site}")


@pytest.mark.parametrize("family", ["gpt2", "gemma3", "qwen3"])
def test_folding_is_the_norm_without_its_scale(family):
    """norm(x) @ W = scale(x) * x @ W_folded (+ the norm bias's constant), so the scale-free score is exact."""
    model = tiny_model(family)
    raw, folded = head_weights(model, 2), head_weights(model, 2, fold=True)
    norm = input_norm(model, 2)
    params = norm_params(norm)
    x = torch.randn(5, model.d_model, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        normed = norm(x).double()
    constant = 0.0 if params.bias is None else params.bias.double() @ raw.v
    expected = torch.einsum("pd,hde->phe", normed, raw.v) - constant
    scale = params.scale(x).double()
    mine = scale[:, None, None] * torch.einsum("pd,hde->phe", x.double(), folded.v)
    torch.testing.assert_close(mine, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3", "gpt_neox"])
def test_scores_equal_the_direct_formula_on_explicit_products(family):
    model = tiny_model(family)
    result = head_composition(model, n_random=4)
    group = model.n_heads // model.n_kv_heads
    folded = [head_weights(model, layer, fold=True) for layer in range(model.n_layers)]

    def ov(layer: int, h: int) -> torch.Tensor:
        return folded[layer].v[h // group] @ folded[layer].o[h]

    def qk(layer: int, h: int) -> torch.Tensor:
        return folded[layer].q[h] @ folded[layer].k[h // group].T

    for writer, reader in (((0, 0), (1, 3)), ((0, 2), (2, 1)), ((1, 1), (2, 0))):
        a = ov(*writer)
        expected = {
            "q": composition_score(a, qk(*reader)),
            "k": composition_score(a, qk(*reader).T),
            "v": composition_score(a, ov(*reader)),
        }
        for mode, value in expected.items():
            assert result.score(mode, writer, reader) == pytest.approx(float(value), rel=1e-9), (mode, writer, reader)
    # only earlier -> later layers are defined
    assert torch.isnan(result.scores["k"][1, 0, 1, 0]) and torch.isnan(result.scores["k"][2, 0, 0, 0])
    assert all(0.0 <= p.score <= 1.0 for pairs in result.top.values() for p in pairs)
    for mode, pairs in result.top.items():
        assert [p.rank for p in pairs[:3]] == [1, 2, 3]
        assert pairs[0].robust_z >= pairs[-1].robust_z and result.spread[mode][2] == 3 * model.n_heads**2


def test_factored_score_equals_the_explicit_products():
    g = torch.Generator().manual_seed(5)
    v1, o1, q2, k2, v2 = (
        torch.randn(*shape, generator=g, dtype=torch.float64) for shape in ((12, 3), (3, 12), (12, 3), (12, 3), (12, 3))
    )
    o2 = torch.randn(3, 12, generator=g, dtype=torch.float64)
    a = v1 @ o1
    for left, right, b in ((q2, k2, q2 @ k2.T), (k2, q2, k2 @ q2.T), (v2, o2.T, v2 @ o2)):
        assert float(factored_score(v1, o1, left, right)) == pytest.approx(float(composition_score(a, b)), rel=1e-10)


def test_random_baseline_is_seeded_and_matches_the_direct_formula():
    first, again = random_baseline(16, 4, 8, seed=3), random_baseline(16, 4, 8, seed=3)
    assert first == again
    g = torch.Generator().manual_seed(0)
    direct = [
        float(
            composition_score(
                torch.randn(16, 4, generator=g, dtype=torch.float64)
                @ torch.randn(4, 16, generator=g, dtype=torch.float64),
                torch.randn(16, 4, generator=g, dtype=torch.float64)
                @ torch.randn(4, 16, generator=g, dtype=torch.float64),
            )
        )
        for _ in range(100)
    ]
    mean = sum(direct) / len(direct)
    baseline = random_baseline(16, 4, 32, seed=0)
    for m, s, x in baseline.values():
        assert abs(m - mean) < 0.05 and 0 < s < 0.2 and x >= m


def test_roles_annotate_pairs():
    model = tiny_model("llama")
    roles = head_roles(model, seq_len=6, n_seqs=2)
    result = head_composition(model, n_random=4, roles=roles, role_threshold=0.0)
    assert all(p.writer_roles for pairs in result.top.values() for p in pairs)  # threshold 0: every head has roles
    assert result.role_pairs and result.role_pairs[0].score >= result.role_pairs[-1].score
    data = result.to_dict()
    assert data["kind"] == "composition" and len(data["scores"]["q"]) == model.n_layers * model.n_heads
    assert data["scores"]["q"][0][0] is None  # JSON has no NaN
    assert "K-composition" in figure_html(result.figure())


def test_bad_input():
    model = tiny_model("gpt2")
    with pytest.raises(InputError, match="top"):
        head_composition(model, top=0)
    with pytest.raises(InputError, match="n_random"):
        head_composition(model, n_random=1)
    with pytest.raises(InputError, match="out of range"):
        head_weights(model, 7)


def test_transformer_lens_composition_scores_agree():
    """TransformerLens's HookedTransformer on the same GPT-2 weights, with fold_ln and centred writing weights."""
    lens = pytest.importorskip("transformer_lens")
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    hf = tiny_hf("gpt2")
    cfg = lens.HookedTransformerConfig(
        n_layers=3,
        d_model=32,
        d_head=8,
        n_heads=4,
        d_mlp=128,
        d_vocab=96,
        n_ctx=64,
        act_fn="gelu_new",
        normalization_type="LN",
        default_prepend_bos=False,
        dtype=torch.float64,
    )
    reference = lens.HookedTransformer(cfg)
    state = convert_gpt2_weights(hf, cfg)
    reference.load_and_process_state_dict(
        {k: v.double() for k, v in state.items()}, fold_ln=True, center_writing_weights=True, center_unembed=False
    )
    ours = head_composition(tiny_model("gpt2"), n_random=2)
    for mode, tl_mode in (("q", "Q"), ("k", "K"), ("v", "V")):
        theirs = reference.all_composition_scores(tl_mode).double()
        mask = ~torch.isnan(ours.scores[mode])
        torch.testing.assert_close(ours.scores[mode][mask], theirs[mask], atol=1e-8, rtol=1e-6)
