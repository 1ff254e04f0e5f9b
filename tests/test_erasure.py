"""LEACE concept erasure: the closed form's identities, its optimality, a fresh probe after erasure, and the
eraser as an intervention in the model.

Second routes: the cross-covariance identity Cov(r(X), Z) = 0 computed from the erased data; every other
affine eraser (LEACE plus a perturbation that keeps the identity) moves the data at least as far; plain
orthogonal projection of the class-mean difference moves it at least as far too (Cauchy-Schwarz), while
projecting out the probe's own direction leaves the concept readable; the intervention's cached
activations against the eraser applied by hand to a clean run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import glasslab as gl
from glasslab.errors import InputError
from glasslab.methods.probing import erase, fit_eraser, fit_leace
from glasslab.methods.probing.datasets import ProbeDataset, ProbeExample
from glasslab.methods.probing.erasure import ConceptEraser, erased_cross_validate
from glasslab.methods.probing.leace import cross_covariance
from glasslab.methods.probing.probes import cross_validate, fit_direction, make_folds
from glasslab.views.html import figure_html

from .tiny import tiny_model


def correlated(n: int = 2000, d: int = 12, classes: int = 2, seed: int = 0):
    """Anisotropic Gaussian noise plus class means in directions that are not its eigenvectors."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    mixing = rng.normal(size=(d, d)) * np.linspace(0.2, 2.0, d)
    means = rng.normal(size=(classes, d)) * 0.8
    x = rng.normal(size=(n, d)) @ mixing.T + means[labels] + 5.0
    return x, labels


def mean_squared_change(x: np.ndarray, erased: np.ndarray) -> float:
    return float(((erased - x) ** 2).sum(1).mean())


@pytest.mark.parametrize("classes", [2, 3])
def test_erased_activations_have_zero_cross_covariance(classes):
    x, labels = correlated(classes=classes)
    leace = fit_leace(x, labels)
    assert leace.rank == classes - 1
    before = np.abs(cross_covariance(x, labels)).max()
    after = np.abs(cross_covariance(leace.erase(x), labels)).max()
    assert before > 0.1 and after < 1e-12 * max(1.0, np.abs(x).max())
    # Erasure is idempotent and the class means coincide afterwards.
    erased = leace.erase(x)
    np.testing.assert_allclose(leace.erase(erased), erased, atol=1e-9)
    means = np.stack([erased[labels == c].mean(0) for c in range(classes)])
    np.testing.assert_allclose(means, means[[0]].repeat(classes, 0), atol=1e-9)


def test_rank_deficient_covariance_uses_the_pseudo_inverse():
    """More dimensions than examples, plus a constant dimension: still an exact erasure, and directions without
    variance are left alone."""
    rng = np.random.default_rng(2)
    n, d = 40, 100
    labels = np.arange(n) % 2
    x = rng.normal(size=(n, d)) + labels[:, None] * rng.normal(size=d)
    x[:, 7] = 3.0
    leace = fit_leace(x, labels)
    erased = leace.erase(x)
    assert np.abs(cross_covariance(erased, labels)).max() < 1e-10
    np.testing.assert_allclose(erased[:, 7], 3.0, atol=1e-9)
    assert np.isfinite(erased).all()


def test_a_fresh_probe_falls_to_the_majority_rate():
    x, labels = correlated(n=1500, seed=3)
    majority = max(labels.mean(), 1 - labels.mean())
    folds = make_folds(labels, None, 5, seed=0)
    before = cross_validate(x, labels, folds).mean()
    after = erased_cross_validate(x, labels, folds).mean()
    noise = 3 * np.sqrt(0.25 / len(labels))  # three standard errors of an accuracy near 0.5
    assert before > majority + 0.2
    assert abs(after - majority) < noise + 0.01


def test_leace_is_the_smallest_erasing_edit():
    x, labels = correlated(seed=4)
    leace = fit_leace(x, labels)
    erased = leace.erase(x)
    change = mean_squared_change(x, erased)

    # (1) Orthogonal projection that removes the span of the class-mean difference also erases, and moves more.
    delta = cross_covariance(x, labels)[:, :1]
    unit = delta / np.linalg.norm(delta)
    centred = x - x.mean(0)
    projected = x - (centred @ unit) @ unit.T
    assert np.abs(cross_covariance(projected, labels)).max() < 1e-12
    assert change <= mean_squared_change(x, projected) + 1e-12

    # (2) Any other affine eraser x - (Q + E)(x - mean) with E Σ_XZ = 0 keeps the identity and moves more.
    q = leace.projection()
    keep = np.eye(x.shape[1]) - unit @ unit.T
    rng = np.random.default_rng(0)
    for _ in range(20):
        e = rng.normal(size=q.shape) * 0.05 @ keep
        other = x - centred @ (q + e).T
        assert np.abs(cross_covariance(other, labels)).max() < 1e-12
        assert change <= mean_squared_change(x, other) + 1e-12

    # (3) Projecting out the probe's own direction moves less but does not erase: the concept stays readable.
    weights = fit_direction(x, labels == 1).weights
    w = (weights / np.linalg.norm(weights))[:, None]
    without_probe = x - (centred @ w) @ w.T
    folds = make_folds(labels, None, 5, seed=0)
    majority = max(labels.mean(), 1 - labels.mean())
    assert np.abs(cross_covariance(without_probe, labels)).max() > 1e-3
    assert cross_validate(without_probe, labels, folds).mean() > majority + 0.1
    assert cross_validate(erased, labels, folds).mean() < majority + 0.05


def test_leace_input_errors():
    x, labels = correlated(n=50)
    with pytest.raises(InputError, match="at least two classes"):
        fit_leace(x, np.zeros(50, dtype=int))
    with pytest.raises(InputError, match="NaN"):
        fit_leace(np.full((50, 3), np.nan), labels)
    with pytest.raises(InputError, match="identical mean"):
        fit_leace(np.vstack([x[:25], x[:25]]), np.r_[np.zeros(25, int), np.ones(25, int)])


# -- in the model ------------------------------------------------------------------------------------------------

WORDS = ["cat", "dog", "mat", "park", "store", "drink", "paris", "france", "mary", "john"]
CONTEXTS = ["the cat sat on the", "when mary went to the", "john gave a", "a dog ran to", "the capital of"]


def animal_dataset() -> ProbeDataset:
    """Label: the last word's index is even or odd (a fixed, arbitrary property of each word). Every example
    is its own group, so folds share words and a probe on a random model can read the label."""
    examples = [
        ProbeExample(f"{context} {word}", "even" if i % 2 == 0 else "odd", "last", f"{context}|{word}")
        for context in CONTEXTS
        for i, word in enumerate(WORDS)
    ]
    return ProbeDataset("parity", tuple(examples), "parity of the word's index")


@pytest.fixture(scope="module")
def model() -> gl.Model:
    return tiny_model("gemma3")


def test_eraser_intervention_applies_the_closed_form_and_is_scoped(model):
    hook = "blocks.1.resid_post"
    eraser = fit_eraser(model, animal_dataset(), layer=1)
    assert isinstance(eraser, gl.Intervention) and eraser.hook == hook and eraser.leace.rank == 1
    prompts = ["the cat sat on the mat", "when mary went to the park"]
    clean = model.run(prompts, cache=[hook, "blocks.2.resid_post"])
    with model.intervene(eraser):
        erased = model.run(prompts, cache=[hook, "blocks.2.resid_post"])
    by_hand = eraser.leace.erase(clean.cache[hook].double().numpy().reshape(-1, model.d_model))
    np.testing.assert_allclose(erased.cache[hook].reshape(-1, model.d_model).numpy(), by_hand, atol=1e-5)
    assert not torch.allclose(erased.cache["blocks.2.resid_post"], clean.cache["blocks.2.resid_post"])
    after = model.run(prompts, cache=[hook])
    assert torch.equal(after.cache[hook], clean.cache[hook]) and torch.equal(after.logits, clean.logits)

    last_only = ConceptEraser(hook, position=-1, leace=eraser.leace)
    partial = model.run(prompts, cache=[hook], interventions=[last_only])
    assert torch.equal(partial.cache[hook][:, :-1], clean.cache[hook][:, :-1])
    torch.testing.assert_close(partial.cache[hook][:, -1], erased.cache[hook][:, -1])


def test_eraser_on_per_head_and_neuron_hooks(model):
    for hook in ("blocks.0.attn.z", "blocks.1.mlp.post"):
        eraser = fit_eraser(model, animal_dataset(), hook=hook)
        clean = model.run("the cat sat on the mat", cache=[hook])
        run = model.run("the cat sat on the mat", cache=[hook], interventions=[eraser])
        flat = clean.cache[hook][0].reshape(clean.cache[hook].shape[1], -1).double().numpy()
        got = run.cache[hook][0].reshape(flat.shape).numpy()
        np.testing.assert_allclose(got, eraser.leace.erase(flat), atol=1e-5)


def test_eraser_errors(model):
    eraser = fit_eraser(model, animal_dataset(), layer=1)
    on_pattern = ConceptEraser("blocks.1.attn.pattern", leace=eraser.leace)
    with pytest.raises(InputError, match=r"cannot act on 'blocks\.1\.attn\.pattern'"), model.intervene(on_pattern):
        pass
    with pytest.raises(InputError, match="fitted on 32 features"):
        model.run("the cat", interventions=[ConceptEraser("blocks.1.mlp.post", leace=eraser.leace)])
    with pytest.raises(InputError, match="needs leace"):
        ConceptEraser("blocks.1.resid_post")
    with pytest.raises(InputError, match="wildcard"):
        fit_eraser(model, animal_dataset(), hook="blocks.*.resid_post")
    with pytest.raises(InputError, match="give a layer"):
        fit_eraser(model, animal_dataset())


def test_erase_reports_accuracy_downstream_and_loss(model):
    result = erase(model, animal_dataset(), hook="embed", n_folds=5)
    facts = result.to_dict()
    assert facts["kind"] == "erasure" and facts["model"] == model.name and facts["rank"] == 1
    assert [d["hook"] for d in facts["downstream"]] == [f"blocks.{i}.resid_post" for i in range(3)]
    assert result.accuracy_before > 0.9 and abs(result.accuracy_after - result.majority) < 0.2
    assert result.cross_covariance_after < 1e-9 < result.cross_covariance_before
    assert 0 < result.mean_squared_edit < result.mean_squared_norm
    assert np.isfinite([result.loss_before, result.loss_after]).all() and result.loss_after != result.loss_before
    assert "LEACE" in figure_html(result.figure())
    quiet = erase(model, animal_dataset(), layer=1, downstream=False, neutral_texts=None, position=-1)
    assert quiet.downstream == [] and quiet.loss_before is None and quiet.positions == "-1"
