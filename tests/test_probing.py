"""Probes: scoring on synthetic data with known answers, grouped folds, control tasks, closed-form ridge,
harvesting against single runs, probe directions as steering vectors (with a causal check), the real model.

Second routes: planted directions (accuracy ~1, control ~chance) and planted memorisation (seen-word
accuracy high, selectivity ~0); a closed-form ridge solution for scikit-learn's; each example run alone
through ``model.run`` for the batched harvest; a downstream probe's decision under steering.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import glasslab as gl
from glasslab.errors import InputError
from glasslab.methods.intervene.steering import load_steering_vector
from glasslab.methods.probing import erase, harvest, probe, probe_hooks, probe_vector, score_layers
from glasslab.methods.probing.control import control_labels, selectivity
from glasslab.methods.probing.datasets import ProbeDataset, ProbeExample, load_probe_dataset
from glasslab.methods.probing.erasure import NEUTRAL_TEXTS
from glasslab.methods.probing.probe import class_indices
from glasslab.methods.probing.probes import fit_direction, make_folds
from glasslab.views.html import figure_html

from .tiny import tiny_model


def planted(n_words: int = 60, per_word: int = 5, d: int = 20, signal: float = 3.0, seed: int = 0):
    """Labels fixed per word type; activations = label * signal along one direction + isotropic noise."""
    rng = np.random.default_rng(seed)
    word_labels = rng.permutation(np.arange(n_words) % 2)
    groups = np.repeat([f"w{i}" for i in range(n_words)], per_word)
    labels = np.repeat(word_labels, per_word)
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    x = (2 * labels - 1)[:, None] * signal * direction + rng.normal(size=(len(labels), d))
    return x, labels, list(groups), direction


def test_planted_direction_is_read_and_the_control_task_is_not():
    x, labels, groups, _ = planted()
    (score,), kind, folds = score_layers({"h": x}, labels, groups, n_folds=5, seed=0)
    assert kind == "grouped" and folds == 5
    assert score.accuracy > 0.97 and score.seen_accuracy > 0.97
    assert abs(score.control_accuracy - 0.5) < 0.12  # nothing word-specific to memorise
    assert score.selectivity > 0.35
    assert score.selectivity == selectivity(score.seen_accuracy, score.control_accuracy)
    assert score.accuracy == pytest.approx(np.mean(score.fold_accuracies))


def test_memorising_probe_shows_high_seen_accuracy_but_no_selectivity():
    """Random labels per word and a distinct vector per word: only memorising can help."""
    rng = np.random.default_rng(1)
    n_words, per_word, d = 40, 6, 64
    word_vectors = rng.normal(size=(n_words, d)) * 3
    word_labels = rng.permutation(np.arange(n_words) % 2)
    ids = np.repeat(np.arange(n_words), per_word)
    x = word_vectors[ids] + 0.3 * rng.normal(size=(len(ids), d))
    labels, groups = word_labels[ids], [f"w{i}" for i in ids]
    (score,), _, _ = score_layers({"h": x}, labels, groups, n_folds=5, seed=0)
    assert score.seen_accuracy > 0.95 and score.control_accuracy > 0.9  # both memorised
    assert abs(score.selectivity) < 0.1
    assert abs(score.accuracy - 0.5) < 0.2  # held-out words: nothing to generalise from


def test_grouped_folds_never_share_a_word_and_cover_every_example():
    _, labels, groups, _ = planted(n_words=30, per_word=4)
    folds = make_folds(labels, groups, 5, seed=3)
    groups_array = np.array(groups)
    seen = np.concatenate([test for _, test in folds])
    assert sorted(seen.tolist()) == list(range(len(labels)))
    for train, test in folds:
        assert not set(groups_array[train]) & set(groups_array[test])
        assert set(labels[test]) == {0, 1}
    with pytest.raises(InputError, match="too few distinct words"):
        make_folds(labels[:8], groups[:8], 5, seed=0)  # two words: one per class


def test_control_labels_are_fixed_per_word_and_follow_the_label_distribution():
    labels = np.array([0] * 300 + [1] * 100)
    groups = [f"w{i % 200}" for i in range(400)]
    control = control_labels(groups, labels, seed=4)
    for word in set(groups):
        assert len({int(c) for c, g in zip(control, groups, strict=True) if g == word}) == 1
    assert 0.15 < control.mean() < 0.35  # about the task's 25% of class 1
    assert not np.array_equal(control, control_labels(groups, labels, seed=5))


def test_ridge_direction_matches_the_closed_form():
    x, labels, _, _ = planted(n_words=40, per_word=3, d=12, signal=1.0)
    strength = 2.5
    direction = fit_direction(x, labels == 1, "ridge", strength)
    mean, scale = x.mean(0), x.std(0)
    z = (x - mean) / scale
    target = np.where(labels == 1, 1.0, -1.0)
    w = np.linalg.solve(z.T @ z + strength * np.eye(z.shape[1]), z.T @ (target - target.mean()))
    np.testing.assert_allclose(direction.weights, w / scale, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(direction.bias, target.mean() - mean @ (w / scale), rtol=1e-8, atol=1e-10)
    predicted = direction.score(x) > 0
    assert direction.train_accuracy == pytest.approx((predicted == (labels == 1)).mean())


# -- on a tiny model -------------------------------------------------------------------------------------------

SMALL, LARGE = ["one", "two", "three", "four", "five"], ["six", "seven", "eight", "nine", "ten"]
CONTEXTS = ["the cat sat on", "when mary and john went to", "a dog ran to the park and", "the capital of", "john gave"]


def number_words() -> ProbeDataset:
    """Label: is the last word a small or a large number word (fixed per word type)."""
    examples = [
        ProbeExample(f"{context} {word}", "small" if word in SMALL else "large", "last", word)
        for context in CONTEXTS
        for word in SMALL + LARGE
    ]
    return ProbeDataset("numbers", tuple(examples), "small or large number word", positive="large")


@pytest.fixture(scope="module")
def model() -> gl.Model:
    return tiny_model("gemma3")


def test_harvest_equals_each_example_run_alone(model):
    data = ProbeDataset(
        "mixed",
        (
            ProbeExample("the cat sat on the mat", "a", "cat"),
            ProbeExample("mary gave john a drink", "a", -2),
            ProbeExample("one two", "b", "last"),
            ProbeExample("the capital of france is paris", "b", 1),
        ),
    )
    hooks = probe_hooks(model, ["embed", "blocks.1.resid_post", "blocks.0.attn.z", "blocks.1.mlp.post"])
    acts = harvest(model, data, hooks, batch_size=3)
    for i, example in enumerate(data.examples):
        run = model.run(example.text, cache=hooks)
        position = acts.examples.positions[i]
        for hook in hooks:
            expected = run.cache[hook][0, position].reshape(-1).float().numpy()
            np.testing.assert_allclose(acts.values[hook][i], expected, rtol=1e-5, atol=1e-5)
    assert acts.values["blocks.0.attn.z"].shape == (4, model.n_heads * model.d_head)


def test_harvest_stops_after_the_last_layer_it_needs(model):
    calls = []
    handle = model.blocks[2].register_forward_hook(lambda *args: calls.append(1))
    try:
        harvest(model, number_words(), ["blocks.0.resid_post", "blocks.1.mlp.post"])
        assert calls == []
        harvest(model, number_words(), ["blocks.1.resid_pre", "embed"])
        assert calls == []
        harvest(model, number_words(), ["ln_final"])
        assert calls
    finally:
        handle.remove()


def test_probe_hooks_and_their_errors(model):
    assert probe_hooks(model) == [f"blocks.{i}.resid_post" for i in range(3)]
    assert probe_hooks(model, "mlp.post", [2, 0]) == ["blocks.0.mlp.post", "blocks.2.mlp.post"]
    assert probe_hooks(model, "blocks.*.attn_out", [1]) == ["blocks.1.attn_out"]
    with pytest.raises(InputError, match="cannot be probed"):
        probe_hooks(model, "attn.pattern")
    with pytest.raises(InputError, match="layer 7 is out of range"):
        probe_hooks(model, "resid_post", [7])
    with pytest.raises(gl.HookNameError):
        probe_hooks(model, "blocks.*.resid_psot")


def test_probe_result_shape_json_and_figure(model):
    result = probe(model, number_words(), hook=["embed", "resid_post"], n_folds=5)
    facts = result.to_dict()
    assert facts["kind"] == "probe" and facts["model"] == model.name
    assert [layer["hook"] for layer in facts["layers"]] == ["embed"] + [f"blocks.{i}.resid_post" for i in range(3)]
    assert facts["folds"] == "grouped" and facts["majority"] == 0.5 and facts["chance"] == 0.5
    assert facts["word_types"] == 10 and facts["class_counts"] == [25, 25]
    for layer in result.layers:
        assert 0 <= layer.accuracy <= 1 and layer.selectivity == layer.seen_accuracy - layer.control_accuracy
    # The label is a fixed function of the word at the position, so seen-word folds read it perfectly.
    assert result.at("embed").seen_accuracy == 1.0
    html = figure_html(result.figure())
    assert "selectivity" in html and "L1 resid_post" in html
    ridge = probe(model, number_words(), hook="resid_post", layers=[1], probe="ridge", strength=10.0)
    assert ridge.probe == "ridge" and [p.hook for p in ridge.layers] == ["blocks.1.resid_post"]
    with pytest.raises(InputError, match="probe 'svm' is unknown"):
        probe(model, number_words(), probe="svm")


def test_probe_vector_saves_loads_and_steers_a_later_probe(model, tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    data = number_words()
    vector = probe_vector(model, data, layer=1)
    assert vector.method == "probe" and vector.hook == "blocks.1.resid_post" and vector.position == "last"
    assert vector.pairs[0][0].startswith("class large") and vector.pair_projections[0] == pytest.approx(vector.norm)
    loaded = load_steering_vector(model, vector.save("numbers").name)
    assert loaded.method == "probe" and torch.equal(loaded.vector, vector.vector)

    # Causal check: add the layer-1 direction, read a probe fitted at layer 2 on clean activations.
    later = "blocks.2.resid_post"
    clean = harvest(model, data, [later])
    reader = fit_direction(clean.values[later], class_indices(data) == data.classes.index("large"))
    means = []
    for scale in (-1.0, 0.0, 1.0):
        steered = harvest(model, data, [later], interventions=[gl.Add(loaded.hook, vector=loaded.vector, scale=scale)])
        means.append(float(reader.score(steered.values[later]).mean()))
    assert means[0] < means[1] < means[2]
    small = np.array([label == "small" for label in data.labels])
    pushed = harvest(model, data, [later], interventions=[gl.Add(loaded.hook, vector=loaded.vector, scale=2.0)])
    flipped = (reader.score(pushed.values[later])[small] > 0).mean()
    assert flipped > (reader.score(clean.values[later])[small] > 0).mean()


def test_probe_vector_errors(model):
    with pytest.raises(InputError, match="give a layer"):
        probe_vector(model, number_words())
    with pytest.raises(InputError, match="does not carry the residual stream"):
        probe_vector(model, number_words(), hook="blocks.1.mlp.post")
    with pytest.raises(InputError, match="'medium' is not a class"):
        probe_vector(model, number_words(), layer=1, positive="medium")


@pytest.mark.slow
def test_real_model_reads_and_loses_grammatical_number(default_model):
    """Gemma 3 270M, 160 examples of the built-in number set, layers 4 and 8 from one harvest (stopped after
    layer 8); then LEACE at layer 4 with the eraser in the forward pass for the layer-8 probe."""
    data = load_probe_dataset("number").subset(160, seed=0)
    hooks = ["blocks.4.resid_post", "blocks.8.resid_post"]
    acts = harvest(default_model, data, hooks)
    result = probe(default_model, data, hook=hooks, n_folds=4, activations=acts)
    assert result.folds == "grouped"
    for layer in result.layers:
        assert layer.accuracy > result.majority + 0.3  # held-out nouns
        assert layer.control_accuracy <= layer.seen_accuracy + 0.02
    erased = erase(
        default_model, data, layer=4, n_folds=4, downstream=[8], neutral_texts=NEUTRAL_TEXTS[:4], activations=acts
    )
    assert erased.accuracy_before > erased.majority + 0.3
    assert abs(erased.accuracy_after - erased.majority) < 0.12
    assert erased.cross_covariance_after < 1e-6 * erased.cross_covariance_before
    assert np.isfinite([erased.loss_before, erased.loss_after]).all()
