"""Side-effect reports: a no-op changes nothing, a known ablation matches methods.intervene.ablation and hand runs,
weight edits given as context-manager factories are measured and checked for restoring the model."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

import glasslab as gl
from glasslab.errors import GlasslabError, InputError
from glasslab.methods.compare.side_effects import side_effects
from glasslab.methods.intervene.ablation import ablate
from glasslab.methods.metrics import make_metric
from glasslab.views.html import figure_html

from .tiny import tiny_model

PROMPT = "when mary and john went to the store john gave a drink to"
NEUTRAL = ["the cat sat on the mat", "one two three four", "a dog ran"]


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(" ".join([*NEUTRAL, PROMPT]) * 10)
    return str(path)


def test_a_no_op_changes_nothing(model, corpus):
    for nothing in ([gl.Add("blocks.1.resid_post", vector=torch.zeros(32))], contextlib.nullcontext):
        result = side_effects(
            model,
            nothing,
            prompt=PROMPT,
            target="mary",
            versus="john",
            corpus=corpus,
            sequences=3,
            seq_len=16,
            neutral=NEUTRAL,
        )
        assert result.target.change == 0.0
        assert result.corpus.loss_after == result.corpus.loss_before and result.corpus.kl_max == 0.0
        for n in result.neutral:
            assert n.kl_last == 0.0 and n.kl_mean == 0.0 and n.loss_before == n.loss_after
            assert n.top_before == n.top_after


def test_a_known_ablation_matches_the_ablation_method_and_hand_runs(model, corpus):
    head = gl.Ablate("blocks.1.attn.z", head=2)
    result = side_effects(
        model,
        [head],
        prompt=PROMPT,
        target="mary",
        versus="john",
        corpus=corpus,
        sequences=2,
        seq_len=16,
        neutral=NEUTRAL,
    )
    reference = ablate(model, PROMPT, target="mary", versus="john", heads=[(1, 2)])
    assert result.target.before == pytest.approx(reference.clean, abs=1e-5)
    assert result.target.after == pytest.approx(reference.ablated, abs=1e-5)
    assert result.intervention == ["Ablate blocks.1.attn.z (head=2)"]
    # neutral prompts by hand, each alone
    for text, effect in zip(NEUTRAL, result.neutral, strict=True):
        before = torch.log_softmax(model.run(text).logits[0].float(), -1)
        with model.intervene(head):
            after = torch.log_softmax(model.run(text).logits[0].float(), -1)
        ids = model.to_tokens(text)[0, 1:]
        loss_before = float(-before[:-1].gather(1, ids[:, None]).mean())
        loss_after = float(-after[:-1].gather(1, ids[:, None]).mean())
        kl_last = float((before[-1].exp() * (before[-1] - after[-1])).sum())
        assert effect.loss_before == pytest.approx(loss_before, abs=1e-5)
        assert effect.loss_after == pytest.approx(loss_after, abs=1e-5)
        assert effect.kl_last == pytest.approx(kl_last, abs=1e-6)
    assert result.corpus.kl_mean > 0 and result.corpus.sequences == 2 and result.corpus.tokens == 32
    data = result.to_dict()
    assert data["kind"] == "side_effects" and data["target"]["change"] == pytest.approx(result.target.change)
    assert "side effects" in figure_html(result.figure())


def test_a_weight_edit_factory_is_measured_and_its_restore_checked(corpus):
    model = tiny_model("gpt2")
    own = gl.Model(copy.deepcopy(model.hf), model.tokenizer, model.arch, name="copy")
    weight = own.block_module(1, "mlp.c_proj").weight

    @contextlib.contextmanager
    def scaled_mlp():
        saved = weight.detach().clone()
        with torch.no_grad():
            weight.mul_(25.0)
        try:
            yield
        finally:
            with torch.no_grad():
                weight.copy_(saved)

    result = side_effects(own, scaled_mlp, prompt=PROMPT, metric="loss", corpus=corpus, sequences=2, seq_len=16)
    with scaled_mlp():
        edited = float(make_metric(own, "loss")(own, own.run(PROMPT))[0])
    assert result.target.after == pytest.approx(edited, abs=1e-6)
    assert result.target.before != pytest.approx(edited)
    assert result.intervention == ["weight edit scaled_mlp"]

    @contextlib.contextmanager
    def forgetful():
        with torch.no_grad():
            weight.mul_(2.0)
        yield

    with pytest.raises(GlasslabError, match="left the model changed"):
        side_effects(own, forgetful, neutral=NEUTRAL, corpus=None)


def test_bad_input(model):
    with pytest.raises(InputError, match="not"):
        side_effects(model, ["ablate it"], neutral=NEUTRAL, corpus=None)
    with pytest.raises(InputError, match="out of range"):
        side_effects(model, [gl.Ablate("blocks.1.attn.z", head=9)], neutral=NEUTRAL, corpus=None)
    with pytest.raises(InputError, match="target prompt"):
        side_effects(model, [], target="mary", neutral=NEUTRAL, corpus=None)
    with pytest.raises(InputError, match="nothing to measure"):
        side_effects(model, [], corpus=None, neutral=None)
    with pytest.raises(InputError, match="context manager"):
        side_effects(model, lambda: 3, neutral=NEUTRAL, corpus=None)
