"""Editing the offline default model (Gemma 3 270M): the built-in facts it knows, ROME and MEMIT rewriting them."""

from __future__ import annotations

import pytest
import torch

from glasslab.methods.editing import builtin_facts, evaluate_edit, key_statistics, memit, rome
from glasslab.methods.editing.prompts import score_targets

pytestmark = pytest.mark.slow
LAYERS = [2, 3, 4, 5]


@pytest.fixture(scope="session")
def default_stats(default_model):
    """Key statistics on 20k built-in tokens, measured once and then read from the store."""
    return key_statistics(default_model, LAYERS, tokens=20_000)


def test_the_default_model_knows_the_builtin_facts(default_model):
    model = default_model
    facts = builtin_facts()
    run = model.run([f.text for f in facts])
    top = run.last_logits().argmax(-1).tolist()
    for fact, token in zip(facts, top, strict=True):
        assert token == model.token_id(fact.target_true), fact.describe()
    prompts, targets = [], []
    for fact in facts:
        for prompt in (*fact.paraphrases, *fact.neighbours):
            prompts += [prompt, prompt]
            targets += [fact.target_true, fact.target_new]
    scores = score_targets(model, prompts, targets)
    for i in range(0, len(prompts), 2):
        assert scores[i] > scores[i + 1], (prompts[i], targets[i])


def test_rome_rewrites_a_fact_of_the_default_model(default_model, default_stats):
    model = default_model
    weight_before = model.block_module(4, model.arch.mlp_out_proj).weight.detach().clone()
    fact = builtin_facts(["The Eiffel Tower"])[0]
    edit = rome(model, fact, layer=4, stats=default_stats[4])
    result = evaluate_edit(model, edit, fluency=False)
    assert result.before[0].efficacy == 0.0 and result.after[0].efficacy == 1.0
    assert result.after[0].generalisation >= 2 / 3
    assert result.after[0].specificity >= 1 / 3
    assert torch.equal(model.block_module(4, model.arch.mlp_out_proj).weight, weight_before)


def test_memit_rewrites_several_facts_of_the_default_model(default_model, default_stats):
    model = default_model
    facts = builtin_facts(["The Colosseum", "Michael Jordan", "Sushi"])
    edit = memit(model, facts, layers=LAYERS, stats=default_stats)
    result = evaluate_edit(model, edit, fluency=False)
    assert result.mean("efficacy", "before") == 0.0
    assert result.mean("efficacy", "after") >= 2 / 3
    assert result.mean("specificity", "after") >= 0.5
