"""Peer check: integrated gradients and gradient x input against captum on the same embeddings and the
same forward function (the prepared prompt's batched f), on a tiny model and on the default model."""

from __future__ import annotations

import pytest
import torch

from glasslab.methods.input_attribution.gradients import gradient_x_input_embedding, integrated_gradients_embedding
from glasslab.methods.input_attribution.prepared import prepare

from .tiny import tiny_model

captum_attr = pytest.importorskip("captum.attr")

TINY_PROMPT = "when mary and john went to the store john gave a drink to"


def relative_gap(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).norm() / theirs.norm())


RULES = {"gauss_legendre": "gausslegendre", "riemann_middle": "riemann_middle"}


def check_against_captum(prep, steps: int, rules: tuple[str, ...] = tuple(RULES)) -> None:
    forward = prep.forward  # [B, n, d] embeddings -> [B] target values, differentiable
    positions = prep.positions
    for rule in rules:
        ours = integrated_gradients_embedding(prep, steps, rule)
        theirs = (
            captum_attr.IntegratedGradients(forward)
            .attribute(
                prep.inputs,
                baselines=prep.reference,
                n_steps=steps,
                method=RULES[rule],
                internal_batch_size=prep.batch_size,
            )[0]
            .double()
        )
        assert relative_gap(ours, theirs) < 1e-3
        assert relative_gap(ours[positions].sum(-1), theirs[positions].sum(-1)) < 1e-3  # the per-token scores
    ours = gradient_x_input_embedding(prep)[positions]
    inputs = prep.inputs.clone().requires_grad_(True)
    theirs = captum_attr.InputXGradient(forward).attribute(inputs)[0, positions].detach().double()
    assert relative_gap(ours, theirs) < 1e-3
    assert relative_gap(ours.sum(-1), theirs.sum(-1)) < 1e-3


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_integrated_gradients_and_input_x_gradient_match_captum(family):
    prep = prepare(tiny_model(family), TINY_PROMPT, target="mary", baseline="eos")
    check_against_captum(prep, steps=16)


@pytest.mark.slow
def test_captum_on_the_default_model(default_model):
    prep = prepare(default_model, "The capital of France is", target=" Paris")
    check_against_captum(prep, steps=8, rules=("gauss_legendre",))
