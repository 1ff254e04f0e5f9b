"""Clamping SAE features: side-by-side generation and next-token change, checked against plain runs of the
model, and sweeps (a factor of 1 changes nothing, exactly)."""

from __future__ import annotations

import json

import pytest
import torch

from glasslab.errors import InputError
from glasslab.interventions.splice import FeatureEdit, SAESplice
from glasslab.methods.features.clamp import clamp_features, clamp_sweep
from tests.test_sae_splice import random_sae
from tests.tiny import tiny_model

PROMPT = "the cat sat on the"


def test_side_by_side_matches_plain_runs():
    model = tiny_model("llama")
    sae = random_sae(model, hook="blocks.0.resid_post")
    result = clamp_features(model, sae, PROMPT, [2, 6], value=6.0, positions=[1, -1], max_new_tokens=5)
    plain = model.generate(PROMPT, max_new_tokens=5)
    assert result.baseline == plain.completion
    n = model.to_tokens(PROMPT).shape[1]
    # Baseline values: the SAE on a plain forward pass over the prompt and the baseline's new tokens.
    ids = torch.tensor([model.to_tokens(PROMPT)[0].tolist() + plain.new_token_ids])
    acts = sae.encode(model.run(ids, cache=[sae.hook]).cache[sae.hook][0])[:, [2, 6]].T
    torch.testing.assert_close(torch.tensor(result.baseline_values), acts[:, : n + 4], rtol=1e-4, atol=1e-5)
    clamped = torch.tensor(result.clamped_values)
    assert torch.equal(clamped[:, [1, n - 1]], torch.full((2, 2), 6.0))
    # Next token: the model's own probabilities with and without the same splice.
    base = torch.softmax(model.run(PROMPT).last_logits()[0], -1)
    splice = SAESplice(sae, [FeatureEdit([2, 6], "value", 6.0, position=[1, -1])])
    moved = torch.softmax(model.run(PROMPT, interventions=[splice]).last_logits()[0], -1)
    kl = float((base * (base.log() - moved.log())).sum())
    assert result.next_token.kl == pytest.approx(kl, rel=1e-4, abs=1e-7) and kl > 0
    for token in result.next_token.tokens:
        assert token.baseline == pytest.approx(float(base[token.token_id]), rel=1e-5)
        assert token.clamped == pytest.approx(float(moved[token.token_id]), rel=1e-5)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "sae_feature_clamp" and data["features"] == [2, 6]
    assert "next-token probability" in result._repr_html_()


def test_zero_and_scale_act_only_where_asked():
    model = tiny_model("gpt2")
    sae = random_sae(model, hook="blocks.1.resid_post")
    zeroed = clamp_features(model, sae, PROMPT, 4, zero=True, max_new_tokens=3)
    assert all(v == 0.0 for v in zeroed.clamped_values[0])
    scaled = clamp_features(model, sae, PROMPT, 4, scale=2.0, positions=[2], max_new_tokens=3)
    before, after = scaled.baseline_values[0], scaled.clamped_values[0]
    assert after[2] == pytest.approx(2 * before[2], rel=1e-5) and after[:2] == pytest.approx(before[:2])


def test_sweep_rows_and_the_identity_factor():
    model = tiny_model("qwen2")
    sae = random_sae(model, hook="blocks.1.resid_post")
    sweep = clamp_sweep(model, sae, PROMPT, [1, 3], [0.0, 1.0, 8.0], mode="scale", max_new_tokens=4)
    assert [row.amount for row in sweep.rows] == [0.0, 1.0, 8.0]
    identity = sweep.rows[1]
    assert identity.kl == 0.0 and identity.completion == sweep.baseline
    assert identity.baseline_top_prob == sweep.baseline_top_prob
    assert sweep.rows[2].kl > 0
    assert json.loads(json.dumps(sweep.to_dict()))["kind"] == "sae_clamp_sweep"
    assert "KL(baseline" in sweep._repr_html_()


def test_bad_clamps_fail_with_one_line():
    model = tiny_model("gpt2")
    sae = random_sae(model)
    wide = random_sae(model, hook="blocks.1.mlp.post")  # gpt2's 128 neurons; tiny llama has 64
    for call, message in [
        (lambda: clamp_features(model, sae, PROMPT, 1), "exactly one"),
        (lambda: clamp_features(model, sae, PROMPT, 1, value=1.0, zero=True), "exactly one"),
        (lambda: clamp_features(model, sae, PROMPT, [], value=1.0), "at least one"),
        (lambda: clamp_features(model, sae, PROMPT, 99, value=1.0), "out of range"),
        (lambda: clamp_features(model, sae, PROMPT, 1, value=1.0, positions=[50]), "position 50"),
        (lambda: clamp_sweep(model, sae, PROMPT, 1, [1.0], mode="zero"), "unknown"),
        (lambda: clamp_sweep(model, sae, PROMPT, 1, []), "between 1 and 64"),
        (lambda: clamp_features(tiny_model("llama"), wide, PROMPT, 1, value=1.0), "another model"),
    ]:
        with pytest.raises(InputError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
