"""Editing the offline default model (Gemma 3 270M): the built-in facts it knows, ROME and MEMIT rewriting them.

Kept cheap: one set of key statistics (two layers, 8k tokens, cached in the store) serves both methods, three
fixed context prefixes replace the five the methods would sample from the model, the values get at most 10
optimisation steps, and MEMIT rewrites two facts over two layers.
Each test still checks a real rewrite (the new answer wins on the edit prompt) and that undoing the edit puts
the weights back bit for bit.
"""

from __future__ import annotations

import pytest
import torch

from glasslab.methods.editing import builtin_facts, evaluate_edit, key_statistics, memit, rome
from glasslab.methods.editing.edit import projection_weight
from glasslab.methods.editing.prompts import score_targets

pytestmark = pytest.mark.slow
LAYERS = [4, 5]  # ROME edits layer 4, MEMIT layers 4-5
STATS_TOKENS = 8_000  # enough for both rewrites (checked against 20k: the same outcomes); 5 s to measure, then cached
PREFIXES = ["", "The weather was fine today. ", "I read the following in a book. "]


@pytest.fixture(scope="module")
def default_stats(default_model):
    """Key statistics of the two layers, measured once and then read from the store."""
    return key_statistics(default_model, LAYERS, tokens=STATS_TOKENS)


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


def _weights(model, layers) -> dict[int, torch.Tensor]:
    return {layer: projection_weight(model, layer).detach().clone() for layer in layers}


def _assert_restored(model, before: dict[int, torch.Tensor]) -> None:
    for layer, weight in before.items():
        assert torch.equal(projection_weight(model, layer), weight), layer


def test_rome_rewrites_a_fact_of_the_default_model(default_model, default_stats):
    model = default_model
    before = _weights(model, LAYERS)
    fact = builtin_facts(["The Eiffel Tower"])[0]
    edit = rome(model, fact, layer=4, stats=default_stats[4], prefixes=PREFIXES, steps=10)
    result = evaluate_edit(model, edit, fluency=False)
    assert result.before[0].efficacy == 0.0 and result.after[0].efficacy == 1.0
    assert result.after[0].generalisation >= 2 / 3
    assert result.after[0].specificity >= 1 / 3
    _assert_restored(model, before)


def test_memit_rewrites_two_facts_of_the_default_model(default_model, default_stats):
    model = default_model
    before = _weights(model, LAYERS)
    facts = builtin_facts(["Michael Jordan", "The Colosseum"])
    # 25 steps: with key statistics of English text (the default corpus) 10 left both facts unchanged.
    edit = memit(model, facts, layers=LAYERS, stats=default_stats, prefixes=PREFIXES, steps=25)
    result = evaluate_edit(model, edit, fluency=False)
    assert result.mean("efficacy", "before") == 0.0 and result.mean("efficacy", "after") == 1.0
    assert result.mean("specificity", "after") >= 0.5
    assert min(edit.details["z_reached"]) > 0.4  # the stream moved a good part of the way toward z, along it
    _assert_restored(model, before)
