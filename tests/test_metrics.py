"""Metrics for causal methods, against direct computations on Hugging Face's own logits."""

from __future__ import annotations

import pytest
import torch

import glasslab as gl
from glasslab.methods.metrics import make_metric, normalised

from .tiny import tiny_hf, tiny_model

PROMPTS = ["when mary and john went to the store john gave a drink to", "the cat sat on the mat"]


def hf_logits(family: str) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = tiny_model(family).tokenize(PROMPTS)
    with torch.inference_mode():
        logits = tiny_hf(family)(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).logits
    return logits, tokens.attention_mask.sum(1)


@pytest.fixture(params=["gpt2", "gemma2", "llama"])
def family(request) -> str:
    return request.param


def both_runs(model: gl.Model) -> list:
    """A run with logits, and one that skipped them and kept ln_final (what sweeps use)."""
    return [model.run(PROMPTS), model.run(PROMPTS, cache=["ln_final"], logits=False)]


def test_logit_metrics_equal_direct_indexing(family):
    model = tiny_model(family)
    logits, lengths = hf_logits(family)
    last = logits[torch.arange(2), lengths - 1]
    mary, john = (model.tokenizer.convert_tokens_to_ids(w) for w in ("mary", "john"))
    for run in both_runs(model):
        torch.testing.assert_close(make_metric(model, "logit", target="mary")(model, run), last[:, mary])
        diff = make_metric(model, "logit_diff", target="mary", versus="john")(model, run)
        torch.testing.assert_close(diff, last[:, mary] - last[:, john])
        prob = make_metric(model, "prob", target="mary")(model, run)
        torch.testing.assert_close(prob, last.softmax(-1)[:, mary])
        at_two = make_metric(model, "logit", target="mary", position=2)(model, run)
        torch.testing.assert_close(at_two, logits[:, 2, mary])


def test_loss_metric_equals_cross_entropy(family):
    model = tiny_model(family)
    logits, lengths = hf_logits(family)
    tokens = model.tokenize(PROMPTS).input_ids
    for run in both_runs(model):
        values = make_metric(model, "loss")(model, run)
        span = make_metric(model, "loss", span=(2, 5))(model, run)
        for row in range(2):
            n = int(lengths[row])
            expected = torch.nn.functional.cross_entropy(logits[row, : n - 1], tokens[row, 1:n])
            assert values[row].item() == pytest.approx(expected.item(), rel=1e-5)
            expected_span = torch.nn.functional.cross_entropy(logits[row, 1:4], tokens[row, 2:5])
            assert span[row].item() == pytest.approx(expected_span.item(), rel=1e-5)


def test_kl_metric_is_zero_on_the_clean_run_and_matches_kl_div(family):
    model = tiny_model(family)
    clean = model.run(PROMPTS[0])
    other = model.run(PROMPTS[0], interventions=[gl.Ablate("blocks.0.mlp_out")])
    metric = make_metric(model, "kl").with_reference(model, clean)
    assert metric(model, clean).item() == pytest.approx(0.0, abs=1e-6)
    p = clean.logits[0, -1].log_softmax(-1)
    q = other.logits[0, -1].log_softmax(-1)
    expected = torch.nn.functional.kl_div(q, p, log_target=True, reduction="sum")
    assert metric(model, other).item() == pytest.approx(expected.item(), rel=1e-4)
    with pytest.raises(gl.InputError, match="with_reference"):
        make_metric(model, "kl")(model, clean)


def test_normalised_maps_corrupted_to_zero_and_clean_to_one():
    assert normalised(3.0, clean=3.0, corrupted=1.0) == 1.0
    assert normalised(1.0, clean=3.0, corrupted=1.0) == 0.0
    assert normalised(2.0, clean=3.0, corrupted=1.0) == 0.5
    with pytest.raises(gl.InputError, match="nothing to recover"):
        normalised(2.0, clean=1.0, corrupted=1.0)


@pytest.mark.parametrize(
    "kind, options, message",
    [
        ("accuracy", {}, "unknown metric"),
        ("logit", {}, "needs a target"),
        ("logit_diff", {"target": "mary"}, "needs a versus"),
        ("loss", {"span": (0, 3)}, "span must be"),
        ("logit", {"target": 10**9}, "outside the vocabulary"),
    ],
)
def test_bad_metrics_are_one_line_errors(kind, options, message):
    with pytest.raises(gl.InputError, match=message) as error:
        make_metric(tiny_model("gpt2"), kind, **options)
    assert "\n" not in str(error.value)


def test_metric_position_outside_the_prompt_is_an_error():
    model = tiny_model("gpt2")
    with pytest.raises(gl.InputError, match="outside a prompt"):
        make_metric(model, "logit", target="mary", position=50)(model, model.run(PROMPTS))
