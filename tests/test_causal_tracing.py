"""Causal tracing: exact identities on tiny models, seeded noise, batching, and the real model's picture."""

from __future__ import annotations

import json

import pytest
import torch

from glasslab.errors import InputError
from glasslab.methods.editing.tracing import (
    causal_trace,
    default_window,
    prepare_trace,
    restored_probabilities,
    window_layers,
)
from glasslab.views.html import figure_html

from .tiny import tiny_model

PROMPT, SUBJECT = "when mary and john went to the", "mary and john"


@pytest.mark.parametrize("family", ["gpt2", "gemma3", "gpt_neox"])
def test_restoring_every_position_of_the_embedding_is_the_clean_run(family):
    model = tiny_model(family)
    setup = prepare_trace(model, PROMPT, SUBJECT, ["blocks.0.resid_pre"], samples=3, seed=1)
    n = setup.tokens.shape[1]
    probs, _ = restored_probabilities(setup, [None, {"blocks.0.resid_pre": list(range(n))}])
    # the restored run is a row of a batch, the clean run alone: equal up to rounding at the probability's scale
    assert probs[1].item() == pytest.approx(setup.clean_prob, rel=1e-5)
    assert abs(probs[0].item() - setup.clean_prob) > 1e-6  # the noise does corrupt (tiny models are near-uniform)


def test_restoring_the_last_layer_output_at_the_last_position_is_the_clean_run():
    model = tiny_model("llama")
    last = model.n_layers - 1
    setup = prepare_trace(model, PROMPT, SUBJECT, [f"blocks.{last}.resid_post"], samples=2)
    n = setup.tokens.shape[1]
    probs, _ = restored_probabilities(setup, [{f"blocks.{last}.resid_post": [n - 1]}])
    assert probs[0].item() == pytest.approx(setup.clean_prob, abs=1e-6)


def test_trace_is_seeded_and_independent_of_batching():
    model = tiny_model("gemma3")
    options = dict(samples=2, kinds=["mlp", "attn"])
    first = causal_trace(model, PROMPT, SUBJECT, seed=3, **options)
    again = causal_trace(model, PROMPT, SUBJECT, seed=3, batch_size=13, **options)
    other = causal_trace(model, PROMPT, SUBJECT, seed=4, **options)
    assert again.forward_passes > first.forward_passes
    for kind in first.kinds:
        assert torch.allclose(torch.tensor(first.scores[kind]), torch.tensor(again.scores[kind]), atol=1e-6)
    assert first.corrupted_prob != other.corrupted_prob


def test_positions_before_the_subject_cannot_restore_anything():
    # Causal attention: states before the subject never see the noise, so restoring them is a no-op.
    model = tiny_model("qwen2")
    trace = causal_trace(model, "the cat sat on the mat and mary went to the", "mary", samples=2, kinds=["resid"])
    grid = torch.tensor(trace.scores["resid"])
    assert torch.allclose(
        grid[:, : trace.subject_start], torch.tensor(trace.corrupted_prob, dtype=grid.dtype), atol=1e-6
    )
    # Restoring the subject's own embedding at layer 0 undoes the whole corruption.
    assert grid[0, trace.subject_start].item() == pytest.approx(trace.clean_prob, abs=1e-6)


def test_windows_follow_the_paper():
    assert window_layers(5, 10, 48) == list(range(0, 10))
    assert window_layers(20, 10, 48) == list(range(15, 25))
    assert window_layers(47, 10, 48) == list(range(42, 48))
    assert window_layers(2, 1, 3) == [2]
    assert default_window(48) == 10 and default_window(18) == 4 and default_window(3) == 1


def test_result_renders_and_serialises():
    model = tiny_model("gpt2")
    trace = causal_trace(model, PROMPT, SUBJECT, samples=1, target="the")
    data = json.loads(json.dumps(trace.to_dict()))
    assert data["kind"] == "causal_trace" and data["model"] == model.name
    assert set(data["scores"]) == {"resid", "mlp", "attn"}
    assert len(data["scores"]["mlp"]) == model.n_layers and len(data["scores"]["mlp"][0]) == len(trace.tokens)
    assert trace.tokens[trace.subject_start : trace.subject_end] == ["mary", "and", "john"]
    figure = trace.figure()
    assert len(figure.panels) == 3 and figure.what_you_see and figure.caveat
    assert "<table" in trace._repr_html_() and figure_html(figure)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject": "paris"},
        {"subject": ""},
        {"kinds": ["neurons"]},
        {"samples": 0},
        {"window": 0},
        {"layers": [9]},
        {"noise": float("nan")},
        {"noise_std": -1.0},
        {"target": ""},
    ],
)
def test_bad_input_is_one_line(kwargs):
    model = tiny_model("gpt2")
    options = {"subject": SUBJECT} | kwargs
    subject = options.pop("subject")
    with pytest.raises(InputError) as info:
        causal_trace(model, PROMPT, subject, **options)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_default_model_recalls_the_fact_from_subject_mlps(default_model):
    model = default_model
    prompt, subject = "The Eiffel Tower is located in the city of", "The Eiffel Tower"
    run = model.run(prompt)
    assert model.tokenizer.decode([int(run.last_logits()[0].argmax())]) == " Paris"
    trace = causal_trace(model, prompt, subject, kinds=["mlp"], samples=3, target=" Paris")
    assert trace.clean_prob > 0.5 and trace.corrupted_prob < 0.1
    layer, position, prob = trace.peak("mlp")
    # The MLP restoring effect peaks on a subject token, in the first half of the network.
    assert trace.subject_start <= position < trace.subject_end
    assert layer < model.n_layers // 2
    assert prob > 3 * trace.corrupted_prob
