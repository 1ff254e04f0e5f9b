"""SAE evaluation against hand computations and a second route through glasslab's own interventions."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

import glasslab as gl
from glasslab.data import packed_sequences
from glasslab.errors import InputError
from glasslab.methods.features.evaluate import SAEEvaluation, _activation_stats, evaluate_sae, splice
from glasslab.sae import SAE, SAEConfig
from tests.tiny import WORDS, tiny_model

HOOK = "blocks.1.resid_post"
SEQ = 12


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama")


def documents(n: int = 30) -> list[str]:
    rng = random.Random(1)
    return [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(n)]


def perfect_sae(d: int) -> SAE:
    """ReLU features x+ and x- with decoder +I and -I: relu(x) - relu(-x) == x exactly."""
    sae = SAE(SAEConfig("standard", d, 2 * d, HOOK, apply_b_dec_to_input=False))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
    return sae


def random_topk(d: int, k: int = 3, seed: int = 0) -> SAE:
    sae = SAE(SAEConfig("topk", d, 4 * d, HOOK, k=k))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d, 4 * d, generator=gen))
        sae.W_dec.copy_(torch.randn(4 * d, d, generator=gen) * 0.3)
        sae.b_enc.copy_(torch.randn(4 * d, generator=gen) * 0.1 - 0.5)
    return sae


def test_a_perfect_sae_explains_everything_and_recovers_all_the_loss(model):
    result = evaluate_sae(
        model, perfect_sae(model.d_model), documents=documents(), tokens=300, loss_tokens=60, seq_len=SEQ
    )
    assert result.fve == pytest.approx(1.0, abs=1e-6)
    assert result.loss_spliced == result.loss_clean
    assert result.loss_recovered_mean == 1.0 and result.loss_recovered_zero == 1.0
    assert result.mse == pytest.approx(0.0, abs=1e-8)
    assert result.tokens >= 300 and result.loss_tokens >= 60


def test_losses_match_a_second_route_through_interventions(model):
    sae = random_topk(model.d_model)
    docs = documents()
    result = evaluate_sae(model, sae, documents=docs, tokens=200, loss_tokens=3 * (SEQ - 1), seq_len=SEQ, batch_size=3)
    batch = torch.stack(list(packed_sequences(model, docs, SEQ, limit=3)))
    after_bos = list(range(1, SEQ))
    mean = (
        torch.cat(
            [model.run(b, cache=[HOOK]).cache[HOOK][:, 1:].reshape(-1, model.d_model) for b in _first(model, docs, 200)]
        )[:200]
        .double()
        .mean(0)
        .float()
    )

    def loss(*interventions) -> float:
        logits = model.run(batch, interventions=list(interventions)).logits
        return float(F.cross_entropy(logits[:, 1:-1].reshape(-1, logits.shape[-1]), batch[:, 2:].reshape(-1)))

    assert result.loss_clean == pytest.approx(loss(), rel=1e-5)
    assert result.loss_zero == pytest.approx(loss(gl.Ablate(HOOK, position=after_bos)), rel=1e-5)
    assert result.loss_mean == pytest.approx(loss(gl.Clamp(HOOK, value=mean, position=after_bos)), rel=1e-4)
    spliced = loss(gl.Replace(HOOK, fn=lambda act: sae(act), position=after_bos))
    assert result.loss_spliced == pytest.approx(spliced, rel=1e-5)
    assert result.loss_recovered_mean == pytest.approx(
        (result.loss_mean - spliced) / (result.loss_mean - result.loss_clean), rel=1e-4
    )
    assert SAEEvaluation.from_dict(result.to_dict()) == result


def _first(model, docs, rows):
    sequences = torch.stack(list(packed_sequences(model, docs, SEQ)))
    need = -(-rows // (SEQ - 1))
    return [sequences[:need]]


def test_splice_keeps_bos_and_the_positions(model):
    sae = random_topk(model.d_model)
    batch = torch.stack(list(packed_sequences(model, documents(), SEQ, limit=2)))
    clean = model.run(batch, cache=[HOOK]).cache[HOOK]
    spliced = model.run(batch, cache=[HOOK], interventions=[splice(sae)]).cache[HOOK]
    assert torch.equal(spliced[:, 0], clean[:, 0])
    torch.testing.assert_close(spliced[:, 1:], sae(clean[:, 1:]))


def test_activation_metrics_by_hand():
    sae = SAE(SAEConfig("standard", 2, 4, HOOK, apply_b_dec_to_input=False))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, 0.0]]))
        sae.b_enc.copy_(torch.tensor([0.0, -0.5, 0.0, -100.0]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[1.0, 1.0], [2.0, 0.0], [-1.0, 3.0], [0.5, 0.2]])
    # features: relu(x0), relu(x1 - .5), relu(-x0), never -> rebuild (x0, relu(x1 - .5))
    stats = _activation_stats(sae, [x[:3], x[3:]])
    rebuilt = torch.tensor([[1.0, 0.5], [2.0, 0.0], [-1.0, 2.5], [0.5, 0.0]])
    err = float((x - rebuilt).pow(2).sum())
    var = float((x - x.mean(0)).pow(2).sum())
    assert stats["fve"] == pytest.approx(1 - err / var)
    assert stats["mse"] == pytest.approx(err / 4)
    assert stats["l0"] == pytest.approx((2 + 1 + 2 + 1) / 4)  # active features per row
    assert stats["dead"] == 0.25  # feature 3 never fires
    assert stats["dense"] == 0.75  # features 0, 1, 2 fire on more than 10% of rows
    torch.testing.assert_close(stats["mean"], x.mean(0))


def test_an_sae_for_another_width_is_refused(model):
    with pytest.raises(InputError, match="another model"):
        evaluate_sae(model, perfect_sae(model.d_model + 2), documents=documents(), tokens=10, loss_tokens=0)


def test_figure_and_dict(model):
    sae = random_topk(model.d_model)
    result = evaluate_sae(model, sae, documents=documents(), tokens=100, loss_tokens=11, seq_len=SEQ)
    data = result.to_dict()
    assert data["kind"] == "sae_evaluation" and data["model"] == "tiny-llama"
    assert 0 < data["l0"] <= 3
    assert "SAE quality" in result._repr_html_()
