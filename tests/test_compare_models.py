"""Two models: linear CKA against the kernel (HSIC) formula and its invariances, output KL and loss against
hand computations on Hugging Face's own logits, heads, rankings, and the different-tokenizer paths."""

from __future__ import annotations

import pytest
import torch
import transformers as tf
from tokenizers import Tokenizer, models, pre_tokenizers

import glasslab as gl
from glasslab.errors import InputError
from glasslab.methods.compare.models import (
    CKAStats,
    compare_generations,
    compare_models,
    layer_pairs,
    linear_cka,
)
from glasslab.model.architectures import architecture_for
from glasslab.views.html import figure_html

from .tiny import tiny_model

PROMPTS = ["the cat sat on the mat", "when mary and john went to the store", "one two three four five six"]


def kernel_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """CKA from centred Gram matrices over tokens: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))."""
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float((k * l_).sum() / torch.sqrt((k * k).sum() * (l_ * l_).sum()))


def test_cka_identities_on_matrices():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 8, generator=g, dtype=torch.float64)
    y = x @ torch.randn(8, 5, generator=g, dtype=torch.float64) + 0.5 * torch.randn(
        50, 5, generator=g, dtype=torch.float64
    )
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, y) == pytest.approx(kernel_cka(x, y), abs=1e-10)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    assert linear_cka(x @ q * 3.7 + 2.0, y) == pytest.approx(linear_cka(x, y), abs=1e-10)  # rotation, scale, shift
    assert 0.0 < linear_cka(x, y) < 1.0
    # a non-isotropic scaling is not an invariance
    assert linear_cka(x * torch.linspace(0.1, 10, 8, dtype=torch.float64), y) != pytest.approx(linear_cka(x, y))
    # streaming in chunks equals the one-shot value
    stats = CKAStats(8, 5)
    for start in range(0, 50, 7):
        stats.update(x[start : start + 7], y[start : start + 7])
    assert stats.value() == pytest.approx(linear_cka(x, y), abs=1e-10)


def test_layer_pairs_by_relative_depth():
    assert layer_pairs(3, 3) == [(0, 0), (1, 1), (2, 2)]
    assert layer_pairs(3, 5) == [(0, 0), (1, 2), (2, 4)]


def test_a_model_against_itself():
    model = tiny_model("llama")
    result = compare_models(model, model, prompts=PROMPTS, batch_size=2)
    assert all(c == pytest.approx(1.0, abs=1e-9) for c in result.cka)
    assert result.kl == pytest.approx(0.0, abs=1e-7) and result.loss_a == result.loss_b
    assert max(max(row) for row in result.head_distance) < 1e-6
    # loss by hand: Hugging Face's logits on each prompt alone
    losses, counted = 0.0, 0
    for prompt in PROMPTS:
        ids = model.to_tokens(prompt)
        with torch.no_grad():
            logits = model.hf(input_ids=ids).logits[0]
        losses += float(torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:], reduction="sum"))
        counted += ids.shape[1] - 1
    assert result.loss_a == pytest.approx(losses / counted, rel=1e-5)
    assert result.sequences == 3 and result.tokens == sum(model.to_tokens(p).shape[1] for p in PROMPTS)


def test_kl_and_rankings_with_an_intervention_on_b():
    model = tiny_model("gpt2")
    push = gl.Add("blocks.1.resid_post", vector=torch.randn(32, generator=torch.Generator().manual_seed(0)), scale=3.0)
    result = compare_models(model, model, prompts=PROMPTS, batch_size=3, top=4, interventions_b=[push])
    total, count, per_prompt = 0.0, 0, []
    for prompt in PROMPTS:
        clean = torch.log_softmax(model.run(prompt).logits[0].float(), -1)
        pushed = torch.log_softmax(model.run(prompt, interventions=[push]).logits[0].float(), -1)
        kl = (clean.exp() * (clean - pushed)).sum(-1)
        total, count = total + float(kl.sum()), count + kl.shape[0]
        per_prompt.append(float(kl.mean()))
    assert total / count > 1e-3  # a real change, well above float rounding between padded and single runs
    assert result.kl == pytest.approx(total / count, rel=1e-4)
    assert [s.kl for s in result.top_sequences] == pytest.approx(sorted(per_prompt, reverse=True), rel=1e-4)
    assert result.top_sequences[0].text == PROMPTS[per_prompt.index(max(per_prompt))]
    # layer 0 is untouched, so its representation is identical; heads of layer 0 did not change
    assert result.cka[0] == pytest.approx(1.0, abs=1e-9)
    assert max(result.head_distance[0]) < 1e-6
    assert len(result.top_positions) == 4 and result.top_positions[0].kl >= result.top_positions[-1].kl
    assert "with interventions" in result.model_b


def test_two_families_sharing_the_tokenizer(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text(" ".join(PROMPTS * 20))
    a, b = tiny_model("gpt2"), tiny_model("gemma3")
    result = compare_models(a, b, corpus=str(corpus), sequences=4, seq_len=16, batch_size=2)
    assert result.sequences == 4 and result.tokens == 64
    assert all(0.0 <= c <= 1.0 + 1e-9 for c in result.cka)
    assert result.kl > 0 and result.loss_a != result.loss_b
    data = result.to_dict()
    assert data["kind"] == "compare_models" and len(data["cka"]) == 3 and len(data["head_distance"][0]) == 4
    assert "CKA" in figure_html(result.figure())


def _other_tokenizer_model() -> gl.Model:
    vocab = {t: i for i, t in enumerate(["<pad>", "<bos>", "<eos>", "<unk>", "hello", "world", "the", "cat"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = tf.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    hf = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=32, vocab_size=8)).eval()
    return gl.Model(hf, tokenizer, architecture_for("gpt2"), name="other-tokenizer")


def test_different_tokenizers_get_a_clear_error_and_a_text_comparison():
    a, other = tiny_model("gpt2"), _other_tokenizer_model()
    with pytest.raises(InputError, match="different tokenizers"):
        compare_models(a, other, prompts=PROMPTS)
    result = compare_generations(a, other, ["the cat"], max_new_tokens=3)
    assert result.texts_a[0] == a.generate("the cat", max_new_tokens=3).completion
    assert result.texts_b[0] == other.generate("the cat", max_new_tokens=3).completion
    assert result.to_dict()["rows"][0]["identical"] == (result.texts_a[0] == result.texts_b[0])
    figure_html(result.figure())


def test_bad_input():
    model = tiny_model("gpt2")
    with pytest.raises(InputError, match="not both"):
        compare_models(model, model, prompts=PROMPTS, corpus="builtin")
    with pytest.raises(InputError, match="batch_size"):
        compare_models(model, model, prompts=PROMPTS, batch_size=0)
    with pytest.raises(InputError, match="no prompts"):
        compare_generations(model, model, [])
