"""Input attribution on tiny models, each method checked by a second route: finite differences, plain
Hugging Face forwards on edited embeddings, identities (completeness, efficiency, rows summing to 1)
and a hand-solved max-flow."""

from __future__ import annotations

import copy
import functools
import itertools
import json
import math

import numpy as np
import pytest
import torch

import glasslab as gl
from glasslab.methods.input_attribution import attribute, compare_attributions, faithfulness
from glasslab.methods.input_attribution.attention_flow import (
    attention_gradients,
    flow_values,
    mixed_attention,
    rollout_matrix,
)
from glasslab.methods.input_attribution.faithfulness import curve_counts, measure
from glasslab.methods.input_attribution.gradients import integrated_gradients, quadrature
from glasslab.methods.input_attribution.prepared import prepare
from glasslab.methods.input_attribution.shap import shapley_values
from glasslab.model.architectures import architecture_for
from glasslab.views.export import write_result

from .tiny import tiny_hf, tiny_model, word_tokenizer

PROMPT = "when mary and john went to the store john gave a drink to"


@functools.cache
def double_model(family: str) -> gl.Model:
    """A float64 copy of the tiny model, so finite differences and quadrature errors are not float noise."""
    hf = copy.deepcopy(tiny_hf(family)).double()
    return gl.Model(hf, word_tokenizer(), architecture_for(hf.config.model_type), name=f"tiny-{family}-f64")


def hf_logits(model: gl.Model, embeds: torch.Tensor) -> torch.Tensor:
    """Second route: the plain Hugging Face forward on embeddings, no glasslab hooks."""
    with torch.no_grad():
        return model.hf(inputs_embeds=embeds).logits[:, -1].double()


def hf_value(prep, embeds: torch.Tensor) -> torch.Tensor:
    return hf_logits(prep.model, embeds)[:, prep.target.token_id]


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
def test_gradients_match_finite_differences(family):
    model = double_model(family)
    prep = prepare(model, PROMPT, target="mary", baseline="eos")
    grad = prep.input_gradient()
    generator = torch.Generator().manual_seed(0)
    # Hugging Face norms and softmax compute in float32 even in a float64 model: central differences of
    # step 1e-4 are good to about 1e-4 here.
    eps = 1e-4
    for _ in range(3):
        direction = torch.randn(prep.inputs.shape, generator=generator, dtype=torch.float64)
        ahead, behind = prep.evaluate(torch.cat([prep.inputs + eps * direction, prep.inputs - eps * direction]))
        assert float((grad * direction[0]).sum()) == pytest.approx(float(ahead - behind) / (2 * eps), rel=1e-3)
    # gradient x input of token i is the derivative of f when token i's embedding is scaled by t, at t = 1
    gxi = attribute(model, PROMPT, "gxi", target="mary", baseline="eos").scores
    for index, position in enumerate(prep.positions[:4]):
        scaled = prep.inputs.repeat(2, 1, 1)
        scaled[0, position] *= 1 + 1e-3
        scaled[1, position] *= 1 - 1e-3
        ahead, behind = hf_value(prep, scaled)
        assert gxi[index] == pytest.approx(float(ahead - behind) / 2e-3, rel=1e-3, abs=1e-3 * max(map(abs, gxi)))
    saliency = attribute(model, PROMPT, "saliency", target="mary", baseline="eos").scores
    assert saliency == pytest.approx(grad[prep.positions].norm(dim=-1).tolist())


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
def test_integrated_gradients_completeness(family):
    model = double_model(family)
    prep = prepare(model, PROMPT, target="mary", baseline="eos")
    full, base = hf_value(prep, torch.cat([prep.inputs, prep.reference])).tolist()
    assert (prep.full_value, prep.reference_value) == pytest.approx((full, base), abs=1e-7)
    errors = []
    for steps in (4, 64):
        out = integrated_gradients(prep, steps)
        assert out.completeness_error == pytest.approx(abs(float(out.scores.sum()) - (full - base)), abs=1e-7)
        errors.append(out.completeness_error)
    assert errors[1] < 1e-5 * max(1.0, abs(full - base)) and errors[1] < errors[0]
    result = attribute(model, PROMPT, "ig", target="mary", baseline="eos", steps=64)
    assert result.completeness_error == pytest.approx(errors[1], abs=1e-12)
    assert sum(result.scores) == pytest.approx(full - base, abs=1e-6)


def test_quadrature_rules():
    for rule in ("gauss_legendre", "riemann_middle", "riemann_trapezoid"):
        points, weights = quadrature(rule, 7)
        assert float(weights.sum()) == pytest.approx(1.0) and 0 <= float(points.min()) <= float(points.max()) <= 1
        assert points.dtype == weights.dtype == torch.float64
    points, weights = quadrature("gauss_legendre", 5)
    assert float((weights * points**9).sum()) == pytest.approx(1 / 10, abs=1e-12)  # exact to degree 2n - 1
    points, weights = quadrature("riemann_trapezoid", 3)
    assert points.tolist() == [0, 0.5, 1] and weights.tolist() == [0.25, 0.5, 0.25]


def test_zero_baseline_exposes_the_norm_singularity():
    """RMSNorm(a x) jumps from 0 to x/|x| as a leaves 0, so from a zero baseline the quadrature misses
    part of the path: the completeness error says so instead of hiding it."""
    model = double_model("gemma3")
    prep = prepare(model, PROMPT, target="mary", baseline="zero")
    error = integrated_gradients(prep, 32).completeness_error
    assert error > 1e-3 * abs(prep.full_value - prep.reference_value)


@pytest.mark.parametrize("family", ["gemma3", "gpt2"])
def test_shap_sampled_efficiency(family):
    model = tiny_model(family)
    result = attribute(model, PROMPT, "shap", target="mary", budget=60, seed=3)
    prep = prepare(model, PROMPT, target="mary")
    full, base = hf_value(prep, torch.cat([prep.inputs, prep.reference])).tolist()
    assert result.details["estimator"] == "antithetic permutation sampling" and result.details["orders"] == 4
    assert result.evaluations == 4 * (len(prep.positions) - 1) <= 60
    assert sum(result.scores) == pytest.approx(full - base, abs=2e-5)  # exact for any sample of orders
    assert len(result.stderr) == len(result.scores) and all(e >= 0 for e in result.stderr)
    again = attribute(model, PROMPT, "shap", target="mary", budget=60, seed=3)
    other = attribute(model, PROMPT, "shap", target="mary", budget=60, seed=4)
    assert again.scores == result.scores and other.scores != result.scores


def test_shap_exact_equals_the_average_over_all_orders():
    """Second route: Shapley values as the mean marginal over every order, each coalition run through HF."""
    model = double_model("llama")
    prompt = "the cat sat on"
    prep = prepare(model, prompt, target="mat")
    result = shapley_values(prep, budget=64)
    assert result.details["estimator"] == "exact"
    m = len(prep.positions)

    @functools.cache
    def value(kept: frozenset) -> float:
        keep = torch.tensor([[i in kept for i in range(m)]])
        return float(hf_value(prep, prep.embeds(keep))[0])

    expected = np.zeros(m)
    for order in itertools.permutations(range(m)):
        for k, player in enumerate(order):
            expected[player] += value(frozenset(order[: k + 1])) - value(frozenset(order[:k]))
    expected /= math.factorial(m)
    assert result.scores.numpy() == pytest.approx(expected, abs=1e-7)  # the target is read in float32


def test_shap_sampling_agrees_with_exact_within_its_standard_error():
    model = tiny_model("llama")
    prep = prepare(model, "the cat sat on the mat when mary ran", target="to")
    exact = shapley_values(prep, budget=512)  # 9 tokens: 2^9 coalitions
    sampled = shapley_values(prep, budget=500, seed=1)  # just short of exact: 62 orders
    assert exact.details["estimator"] == "exact" and sampled.details["orders"] == 62
    gap = (sampled.scores - exact.scores).abs()
    assert bool((gap <= 4 * sampled.stderr + 1e-6).all()) and float(gap.max()) > 0
    few = shapley_values(prep, budget=20, seed=1)  # 2 orders
    assert float((few.scores - exact.scores).norm()) > float(gap.norm())


def test_occlusion_equals_separate_forward_passes():
    model = tiny_model("gemma3")
    prep = prepare(model, PROMPT, target="mary")
    single = attribute(model, PROMPT, "occlusion", target="mary")
    windowed = attribute(model, PROMPT, "occlusion", target="mary", window=3)
    m = len(prep.positions)
    drops = []
    for width in (1, 3):
        row = []
        for start in range(m - width + 1):
            edited = prep.inputs.clone()
            for i in range(start, start + width):
                edited[0, prep.positions[i]] = prep.reference[0, prep.positions[i]]
            row.append(prep.full_value - float(hf_value(prep, edited)[0]))  # one plain forward per window
        drops.append(row)
    assert single.scores == pytest.approx(drops[0], abs=1e-5)
    expected = [np.mean([drops[1][s] for s in range(max(0, i - 2), min(i, m - 3) + 1)]) for i in range(m)]
    assert windowed.scores == pytest.approx(expected, abs=1e-5)


def test_rollout_rows_sum_to_one(family_model):
    prep = prepare(family_model, PROMPT, target="mary")
    run = family_model.run(prep.ids, cache=["blocks.*.attn.pattern"])
    patterns = [run.cache[f"blocks.{layer}.attn.pattern"][0] for layer in range(family_model.n_layers)]
    assert all(p.shape[0] == family_model.n_heads for p in patterns)  # per query head, also with GQA
    rollout = rollout_matrix(mixed_attention(patterns))
    assert rollout.sum(1) == pytest.approx(np.ones(len(prep.tokens)), abs=1e-6)
    assert np.allclose(np.triu(rollout, 1), 0)  # causal: nothing flows from later tokens
    result = attribute(family_model, PROMPT, "rollout", target="mary")
    assert sum(result.scores) + result.details["bos_share"] == pytest.approx(1.0, abs=1e-6)


def test_flow_on_a_hand_made_graph():
    """Three tokens, two layers. Into the top node of token 2 run (1,0)->0.1, (1,1)->0.1, (1,2)->0.8; from
    token 0 the first layer reaches (1,0) 1.0, (1,1) 0.5, (1,2) 0.2, so its max flow is 0.1+0.1+0.2 = 0.4;
    token 1 reaches (1,1) 0.5, (1,2) 0.3: 0.1+0.3 = 0.4; token 2 reaches (1,2) 0.5: 0.5."""
    first = np.array([[1, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]])
    second = np.array([[1, 0, 0], [0.4, 0.6, 0], [0.1, 0.1, 0.8]])
    assert flow_values([first, second], sink=2, sources=[0, 1, 2]) == pytest.approx([0.4, 0.4, 0.5], abs=1e-6)
    assert rollout_matrix([first, second])[2] == pytest.approx([0.31, 0.29, 0.4])  # rollout differs
    # mixing with the identity: half attention, half residual
    mixed = mixed_attention([torch.tensor([[[1.0, 0.0], [0.2, 0.8]], [[1.0, 0.0], [0.6, 0.4]]])])[0]
    assert mixed == pytest.approx(np.array([[1.0, 0.0], [0.2, 0.8]]))


def test_pattern_gradient_matches_finite_difference():
    """The gradient of f w.r.t. attn.pattern (from run(grad=True)) against nudging one pattern entry."""
    model = double_model("llama")
    prep = prepare(model, PROMPT, target="mary")
    _, grads = attention_gradients(prep)
    eps = 1e-3
    for layer, head, key in ((1, 0, 3), (2, 3, 0)):

        def nudged(delta, layer=layer, head=head, key=key):
            def bump(pattern):
                pattern = pattern.clone()
                pattern[0, head, -1, key] += delta
                return pattern

            edit = gl.Replace(f"blocks.{layer}.attn.pattern", fn=bump)
            run = model.run(prep.ids, cache=["ln_final"], logits=False, interventions=[edit])
            return float(prep.target(model, run)[0])

        slope = (nudged(eps) - nudged(-eps)) / (2 * eps)
        assert float(grads[layer][head, -1, key]) == pytest.approx(slope, rel=1e-3, abs=1e-6)
    scores = attribute(model, PROMPT, "gradient_attention", target="mary").scores
    assert all(s >= 0 for s in scores) and max(scores) > 0


def test_faithfulness_curve_endpoints_and_eraser_points():
    model = tiny_model("gemma3")
    result = attribute(model, PROMPT, "ig", target="mary")
    curves = faithfulness(model, result)
    prep = prepare(model, PROMPT, target="mary")
    full, base = hf_value(prep, torch.cat([prep.inputs, prep.reference])).tolist()
    assert curves.deletion[0] == pytest.approx(full, abs=1e-5) and curves.deletion[-1] == pytest.approx(base, abs=1e-5)
    assert curves.insertion[0] == pytest.approx(base, abs=1e-5) and curves.insertion[-1] == pytest.approx(
        full, abs=1e-5
    )
    top = int(np.argmax(result.scores))
    assert curves.order[0] == result.positions[top]
    without_top = prep.inputs.clone()
    without_top[0, result.positions[top]] = prep.reference[0, result.positions[top]]
    only_top = prep.reference.clone()
    only_top[0, result.positions[top]] = prep.inputs[0, result.positions[top]]
    alone, removed = float(hf_value(prep, only_top)[0]), float(hf_value(prep, without_top)[0])
    assert curves.comprehensiveness_at[0] == pytest.approx(full - removed, abs=1e-5)  # level 1%: one token
    assert curves.sufficiency_at[0] == pytest.approx(full - alone, abs=1e-5)
    assert curves.score == pytest.approx(curves.insertion_auc - curves.deletion_auc)
    counts = np.array(curves.counts) / len(result.positions)
    assert curves.deletion_auc == pytest.approx(np.trapezoid(curves.deletion, counts))
    # long prompts: fewer curve points, but both ends and every level's k are kept
    assert (
        curve_counts(100, (0.01, 0.05, 0.1, 0.2, 0.5), 11)[:3] == [0, 1, 5] and curve_counts(100, (0.5,), 11)[-1] == 100
    )


def test_a_perfect_ranking_beats_its_reverse():
    """On an additive ranking the best order must score at least as well as the worst."""
    model = tiny_model("llama")
    prep = prepare(model, PROMPT, target="mary")
    shap = shapley_values(prep, budget=256).scores
    best, worst = measure(prep, shap), measure(prep, -shap)
    assert best.score > worst.score and best.comprehensiveness > worst.comprehensiveness


def test_compare_ranks_every_method(tmp_path):
    model = tiny_model("gemma3")
    result = compare_attributions(model, PROMPT, "all", target="mary", steps=8, budget=40, random_orders=2)
    names = set(result.ranking)
    assert len(names) == 8 and "integrated_gradients" in names and "attention_flow" in names
    scores = [m.faithfulness.score for m in result.methods]
    assert scores == sorted(scores, reverse=True) and [m.rank for m in result.methods] == list(range(1, 9))
    # the same method alone gives the same scores as inside the comparison
    alone = attribute(model, PROMPT, "occlusion", target="mary")
    assert result["occlusion"].attribution.scores == pytest.approx(alone.scores, abs=1e-6)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "attribution_comparison" and data["model"] == model.name
    assert data["ranking"] == result.ranking and len(data["methods"][0]["faithfulness"]["deletion"]) == 14
    figure = result.figure()
    assert len(figure.panels) == 2 and len(figure.panels[0].row_labels) == 8 and len(figure.panels[1].labels) == 9
    assert "faithful" in result._repr_html_()
    write_result(result, tmp_path / "compare.svg")
    with pytest.raises(gl.InputError, match="not in this comparison"):
        result["lrp"]


def test_single_result_renders_and_serialises():
    model = tiny_model("qwen2")
    result = attribute(model, PROMPT, "shap", budget=30)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "input_attribution" and data["model"] == model.name and data["method"] == "shap"
    assert data["positions"][0] == 1 and data["tokens"][0] == "<bos>"  # BOS held fixed, not scored
    assert len(result.figure().panels) == 2 and "SHAP" in result._repr_html_()


def test_targets_and_kinds():
    model = tiny_model("llama")
    prep = prepare(model, PROMPT)
    logits = hf_logits(model, prep.inputs)[0]
    assert prep.target.token_id == int(logits.argmax())  # default: the top prediction
    mary, john = model.token_id("mary"), model.token_id("john")
    for kind, expected in (
        ("logit", logits[mary]),
        ("logprob", torch.log_softmax(logits, -1)[mary]),
        ("prob", torch.softmax(logits, -1)[mary]),
    ):
        assert prepare(model, PROMPT, target="mary", kind=kind).full_value == pytest.approx(float(expected), abs=1e-5)
    diff = prepare(model, PROMPT, target="mary", versus="john")
    assert diff.target.kind == "logit_diff" and diff.full_value == pytest.approx(
        float(logits[mary] - logits[john]), abs=1e-5
    )
    result = attribute(double_model("llama"), PROMPT, "ig", target="mary", versus="john", baseline="eos", steps=48)
    assert result.completeness_error < 1e-6 and result.target["versus"] == "john"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(prompt=""), "empty"),
        (dict(method="lrp"), "unknown attribution method"),
        (dict(method="ig,shap"), "one method"),
        (dict(baseline="noise"), "unknown baseline"),
        (dict(steps=1), "steps must be"),
        (dict(rule="simpson"), "unknown integration rule"),
        (dict(method="shap", budget=2), "budget"),
        (dict(method="occlusion", window=0), "window"),
        (dict(kind="entropy"), "unknown target kind"),
        (dict(target="mary", versus="mary"), "same token"),
        (dict(kind="logit_diff"), "versus"),
        (dict(versus="john", kind="logit"), "only applies"),
        (dict(target=10_000), "outside the vocabulary"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_bad_input_is_one_line_and_leaves_the_model_alone(kwargs, match):
    model = tiny_model("gemma2")
    # Hugging Face may keep output-recording hooks of its own on a model; only new hooks would be ours.
    before = [(*m._forward_hooks, *m._forward_pre_hooks) for m in model.hf.modules()]
    args = dict(prompt=PROMPT, method="ig") | kwargs
    with pytest.raises(gl.InputError, match=match) as info:
        attribute(model, args.pop("prompt"), args.pop("method"), **args)
    assert "\n" not in str(info.value)
    assert torch.is_grad_enabled() and model.hf.config._attn_implementation != "glasslab"
    assert [(*m._forward_hooks, *m._forward_pre_hooks) for m in model.hf.modules()] == before


@pytest.mark.slow
def test_comparison_on_the_default_model(default_model):
    result = compare_attributions(default_model, "The capital of France is", "shap,occlusion,rollout", target=" Paris")
    shap = result["shap"].attribution
    assert shap.details["estimator"] == "exact"  # 5 tokens: all 32 coalitions
    prep = prepare(default_model, "The capital of France is", target=" Paris")
    full, base = hf_value(prep, torch.cat([prep.inputs, prep.reference])).tolist()
    assert sum(shap.scores) == pytest.approx(full - base, rel=1e-4)
    assert result["shap"].faithfulness.score > result.random.score
    tokens = shap.attributed_tokens
    assert shap.scores[tokens.index(" France")] > shap.scores[tokens.index("The")]  # the country matters for Paris
