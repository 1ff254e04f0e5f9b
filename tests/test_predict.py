"""Predictions: top-k, entropy, a target's rank, per-token loss, against direct computations."""

from __future__ import annotations

import pytest
import torch

import glasslab as gl

from .tiny import tiny_hf, tiny_model

PROMPT = "when mary and john went to the store john gave a drink to"


@pytest.fixture(scope="module")
def model():
    return tiny_model("gpt2")


def reference_logits(text: str) -> torch.Tensor:
    ids = tiny_model("gpt2").to_tokens(text)
    with torch.inference_mode():
        return tiny_hf("gpt2")(ids).logits[0]


def test_top_k_and_entropy_match_a_direct_softmax(model):
    result = gl.predict(model, PROMPT, k=5)
    logits = reference_logits(PROMPT)[-1]
    probs = logits.softmax(-1)
    expected = torch.topk(probs, 5)
    assert [s.token_id for s in result.top] == expected.indices.tolist()
    assert [s.rank for s in result.top] == [1, 2, 3, 4, 5]
    torch.testing.assert_close(torch.tensor([s.probability for s in result.top]), expected.values)
    entropy = -(probs * probs.log()).sum()
    assert result.entropy_nats == pytest.approx(entropy.item(), rel=1e-5)


@pytest.mark.parametrize("target_text", ["park", "mary", "seven"])
def test_target_rank_counts_tokens_with_higher_logits(model, target_text):
    logits = reference_logits(PROMPT)[-1]
    target_id = model.tokenizer.convert_tokens_to_ids(target_text)
    result = gl.predict(model, PROMPT, k=3, target=target_text)
    assert result.target.token_id == target_id
    assert result.target.rank == int((logits > logits[target_id]).sum()) + 1
    assert result.target.probability == pytest.approx(logits.softmax(-1)[target_id].item(), rel=1e-5)


def test_token_losses_equal_cross_entropy(model):
    result = gl.predict(model, PROMPT)
    ids = model.to_tokens(PROMPT)[0]
    logits = reference_logits(PROMPT)
    expected = torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="none")
    torch.testing.assert_close(torch.tensor([t.loss for t in result.token_losses]), expected)
    assert [t.position for t in result.token_losses] == list(range(1, len(ids)))
    assert result.mean_loss == pytest.approx(expected.mean().item(), rel=1e-5)


def test_any_position(model):
    result = gl.predict(model, PROMPT, position=2, k=1)
    assert result.position == 2
    assert result.top[0].token_id == int(reference_logits(PROMPT)[2].argmax())
    with pytest.raises(gl.InputError, match="out of range"):
        gl.predict(model, PROMPT, position=99)


def test_result_serialises_and_renders(model, tmp_path):
    result = gl.predict(model, PROMPT, k=3, target="mary")
    data = result.to_dict()
    assert data["kind"] == "prediction" and len(data["top"]) == 3 and data["target"]["token"] == "mary"
    html = result._repr_html_()
    assert "What it does not prove" in html and "mary" in html
    from glasslab.views.export import write_result

    for suffix in (".html", ".svg", ".png", ".json"):
        written = write_result(result, tmp_path / f"prediction{suffix}")
        assert written.stat().st_size > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"prediction{s}" for s in (".html", ".json", ".png", ".svg")]
    with pytest.raises(gl.InputError, match="--out must end in"):
        write_result(result, tmp_path / "prediction.pdf")
