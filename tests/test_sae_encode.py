"""Encoding prompts: the top features per token and one feature's trace equal the SAE applied to a full
forward pass's cache; the reconstruction error statistics are the SAE's own; every hook kind works."""

from __future__ import annotations

import json

import pytest
import torch

from glasslab.errors import InputError
from glasslab.methods.features.encode import feature_activations, sae_features
from tests.test_sae_splice import PROMPT, random_sae
from tests.tiny import tiny_model


@pytest.mark.parametrize("hook", ["blocks.1.resid_post", "blocks.0.attn.z", "blocks.2.mlp.post", "embed", "ln_final"])
def test_top_features_and_error_match_the_sae_on_a_full_run(hook):
    model = tiny_model("qwen2")
    sae = random_sae(model, hook=hook, d_sae=48)
    full = model.run(PROMPT, cache=[hook]).cache[hook][0]
    x = full.flatten(-2) if hook.endswith("attn.z") else full
    expected = sae.encode(x)
    result = sae_features(model, sae, PROMPT, top=3)
    assert [t.token for t in result.tokens] == model.to_str_tokens(PROMPT)
    for p, token in enumerate(result.tokens):
        values, indices = torch.topk(expected[p], 3)
        want = [(int(i), float(v)) for v, i in zip(values, indices, strict=True) if v > 0]
        assert [(s.feature, pytest.approx(s.activation, rel=1e-5, abs=1e-6)) for s in token.top] == want
        assert token.l0 == int((expected[p] > 0).sum())
        error = (x[p] - sae(x[p])).norm()
        assert token.error_norm == pytest.approx(float(error), rel=1e-5, abs=1e-6)
        assert token.relative_error == pytest.approx(float(error / x[p].norm()), rel=1e-5)
    shared = model.run(PROMPT, cache=[hook])
    assert sae_features(model, sae, PROMPT, top=3, run=shared) == result


def test_feature_trace_and_rendering():
    model = tiny_model("gemma3")
    sae = random_sae(model, d_sae=32)
    x = model.run(PROMPT, cache=[sae.hook]).cache[sae.hook][0]
    feature = int((sae.encode(x) > 0).sum(0).argmax())
    trace = feature_activations(model, sae, feature, PROMPT)
    torch.testing.assert_close(torch.tensor(trace.activations), sae.encode(x)[:, feature])
    data = json.loads(json.dumps(trace.to_dict()))
    assert data["fires_on"] > 0 and data["max_activation"] == max(trace.activations)
    assert "activation at each token" in trace._repr_html_()
    result = sae_features(model, sae, PROMPT)
    shown = result.features_shown()
    assert shown and len(shown) <= 30
    assert json.loads(json.dumps(result.to_dict()))["kind"] == "sae_features"
    assert "reconstruction error per token" in result._repr_html_()


def test_bad_requests_fail_with_one_line():
    model = tiny_model("gpt2")
    sae = random_sae(model)
    for call, message in [
        (lambda: sae_features(model, sae, PROMPT, top=0), "top must be"),
        (lambda: feature_activations(model, sae, 64, PROMPT), "out of range"),
        (lambda: sae_features(model, sae, ""), "empty"),
    ]:
        with pytest.raises(InputError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
