"""Tuned lens: the closed-form fit against a direct least-squares solve, resuming against one go, stored files,
KL refinement, the CLI, and on the default model: lower KL than the logit lens on held-out text."""

from __future__ import annotations

import json
import random

import pytest
import torch
from typer.testing import CliRunner

import glasslab.cli.lens  # noqa: F401  (registers the commands)
from glasslab.cli.app import app
from glasslab.data import batches, load_corpus, packed_sequences
from glasslab.errors import InputError
from glasslab.methods.lenses.logit_lens import logit_lens
from glasslab.methods.lenses.tuned_lens import lens_kl, load_tuned_lens, train_tuned_lens

from .tiny import WORDS, save_tiny, tiny_model

SEQ, BATCH = 16, 4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    """Seeded random sentences from the tiny tokenizer's words (several documents, so both splits exist)."""
    rng = random.Random(0)
    folder = tmp_path_factory.mktemp("corpus")
    for doc in range(40):
        text = " ".join(rng.choice(WORDS) for _ in range(150))
        (folder / f"doc{doc:02d}.txt").write_text(text, encoding="utf-8")
    return str(folder)


def normalised(h: torch.Tensor) -> torch.Tensor:
    return h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)


def test_fit_equals_a_direct_least_squares_solve(corpus, tmp_path):
    model = tiny_model("qwen2")
    lens = train_tuned_lens(model, corpus, tokens=1500, seq_len=SEQ, batch_size=BATCH, ridge=0.0, folder=tmp_path)
    sequences = torch.stack(list(packed_sequences(model, load_corpus(corpus, split="train"), SEQ, 100)))
    assert lens.tokens == sequences.shape[0] * (SEQ - 1)
    run = model.run(sequences, cache=["blocks.0.resid_pre", "blocks.1.resid_post", "blocks.2.resid_post"])
    y = normalised(run.cache["blocks.2.resid_post"][:, 1:].reshape(-1, model.d_model).double())
    for layer, name in ((-1, "blocks.0.resid_pre"), (1, "blocks.1.resid_post")):
        x = normalised(run.cache[name][:, 1:].reshape(-1, model.d_model).double())
        x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
        solution = torch.linalg.lstsq(x, y).solution
        torch.testing.assert_close(lens.weight[layer + 1].double(), solution[:-1], atol=2e-4, rtol=1e-3)
        torch.testing.assert_close(lens.bias[layer + 1].double(), solution[-1], atol=2e-4, rtol=1e-3)
    resid = run.cache["blocks.2.resid_post"][0]
    assert torch.equal(lens.translate(2, resid), resid)  # the last layer is the identity


def test_resume_after_interruption_equals_one_go(corpus, tmp_path, monkeypatch):
    model = tiny_model("llama")
    options = dict(tokens=1000, seq_len=SEQ, batch_size=BATCH, checkpoint_every=1)
    whole = train_tuned_lens(model, corpus, folder=tmp_path / "whole", **options)

    real_run, calls = type(model).run, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_tuned_lens(model, corpus, folder=tmp_path / "resumed", **options)
    monkeypatch.setattr(type(model), "run", real_run)
    state = json.loads((tmp_path / "resumed" / "checkpoint" / "state.json").read_text())
    assert state["sequences"] == 3 * BATCH and not (tmp_path / "resumed" / "lens").exists()
    resumed = train_tuned_lens(model, corpus, folder=tmp_path / "resumed", **options)
    assert resumed.tokens == whole.tokens
    torch.testing.assert_close(resumed.weight, whole.weight, atol=1e-6, rtol=0)
    torch.testing.assert_close(resumed.bias, whole.bias, atol=1e-6, rtol=0)

    # asking for more tokens extends the finished fit instead of starting over
    more = train_tuned_lens(model, corpus, folder=tmp_path / "resumed", **{**options, "tokens": 1500})
    fresh = train_tuned_lens(model, corpus, folder=tmp_path / "fresh", **{**options, "tokens": 1500})
    torch.testing.assert_close(more.weight, fresh.weight, atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="more than the"):
        train_tuned_lens(model, corpus, folder=tmp_path / "resumed", **options)
    with pytest.raises(InputError, match="other settings"):
        train_tuned_lens(model, corpus, folder=tmp_path / "resumed", **{**options, "seq_len": 8})


def test_saved_lens_loads_back_and_bad_files_are_one_line_errors(corpus, tmp_path):
    model = tiny_model("gpt2")
    lens = train_tuned_lens(model, corpus, tokens=500, seq_len=SEQ, folder=tmp_path)
    loaded = load_tuned_lens(model, tmp_path / "lens")
    assert torch.equal(loaded.weight, lens.weight) and loaded.objective == lens.objective
    assert "not refined on the paper's KL objective" in lens.objective

    with pytest.raises(InputError, match="no tuned lens"):
        load_tuned_lens(model, tmp_path / "nowhere")
    with pytest.raises(InputError, match="trained for"):
        logit_lens(tiny_model("llama"), "the cat", lens=loaded)
    weights = tmp_path / "lens" / "lens.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InputError, match="unreadable"):
        load_tuned_lens(model, tmp_path / "lens")
    lens.save(tmp_path / "lens")
    (tmp_path / "lens" / "lens.json").write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        load_tuned_lens(model, tmp_path / "lens")


def test_kl_refinement_lowers_kl_on_its_batch_and_resumes(corpus, tmp_path):
    model = tiny_model("gemma3")
    options = dict(tokens=600, seq_len=SEQ, batch_size=BATCH, kl_lr=1e-4)
    base = train_tuned_lens(model, corpus, folder=tmp_path / "a", **options)
    one = train_tuned_lens(model, corpus, folder=tmp_path / "a", kl_steps=1, **options)
    assert "Adam steps on KL" in one.objective
    # the refinement's first batch is the corpus's first batch
    batch = next(batches(packed_sequences(model, load_corpus(corpus, split="train"), SEQ), BATCH))
    text_kl = {name: _kl_on(model, batch, lens) for name, lens in (("base", base), ("one", one))}
    assert all(a < b for a, b in zip(text_kl["one"][:-1], text_kl["base"][:-1], strict=True))

    two = train_tuned_lens(model, corpus, folder=tmp_path / "a", kl_steps=2, **options)  # continues from step 1
    straight = train_tuned_lens(model, corpus, folder=tmp_path / "b", kl_steps=2, **options)
    torch.testing.assert_close(two.weight, straight.weight, atol=1e-6, rtol=0)


def _kl_on(model, batch, lens) -> list[float]:
    """Per-layer KL(output || tuned lens) on one batch, positions 1.., computed directly."""
    run = model.run(batch, cache=["blocks.0.resid_pre", "blocks.*.resid_post"])
    reference = torch.log_softmax(run.logits[:, 1:].float(), -1)
    values = []
    for layer in range(-1, model.n_layers):
        name = "blocks.0.resid_pre" if layer == -1 else f"blocks.{layer}.resid_post"
        log_probs = torch.log_softmax(model.unembed(lens.translate(layer, run.cache[name][:, 1:])).float(), -1)
        values.append(float((reference.exp() * (reference - log_probs)).sum(-1).mean()))
    return values


def test_lens_kl_matches_a_direct_computation(corpus, tmp_path):
    model = tiny_model("mistral")
    lens = train_tuned_lens(model, corpus, tokens=800, seq_len=SEQ, folder=tmp_path)
    result = lens_kl(model, corpus, tokens=3 * (SEQ - 1), seq_len=SEQ, batch_size=2, lens=lens)
    batch = torch.stack(list(packed_sequences(model, load_corpus(corpus, split="test"), SEQ, 3)))
    assert result.tokens == 3 * (SEQ - 1)
    assert result.tuned_lens == pytest.approx(_kl_on(model, batch, lens), rel=1e-4, abs=1e-7)
    assert result.logit_lens[-1] <= 1e-6 and result.tuned_lens[-1] == result.logit_lens[-1]
    data = result.to_dict()
    assert data["kind"] == "lens_kl" and data["layers"][0]["hook"] == "blocks.0.resid_pre"


def test_cli_train_info_lens_and_kl(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    folder = tmp_path / "tiny-llama"
    save_tiny("llama", folder)
    runner = CliRunner()

    def ok(*args: str) -> dict:
        result = runner.invoke(app, [*args, "-m", str(folder), "--json"])
        assert result.exit_code == 0, (result.stderr, result.exception)
        return json.loads(result.stdout)

    missing = runner.invoke(app, ["lens-kl", "--corpus", corpus, "-m", str(folder)])
    assert missing.exit_code == 2 and "glasslab tuned-lens train" in missing.stderr
    trained = ok("tuned-lens", "train", "--corpus", corpus, "--tokens", "600", "--seq-len", str(SEQ))
    assert trained["kind"] == "tuned_lens" and trained["kl_steps"] == 0 and trained["path"].startswith(str(tmp_path))
    assert ok("tuned-lens", "info")["objective"] == trained["objective"]
    lensed = ok("logit-lens", "the cat sat on the", "--tuned", "-p", "-1")
    assert lensed["lens"] == "tuned lens" and "least squares" in lensed["lens_note"]
    kl = ok("lens-kl", "--corpus", corpus, "--tokens", "30", "--seq-len", str(SEQ))
    assert len(kl["layers"]) == 4 and kl["tuned_lens_objective"] == trained["objective"]
    table = runner.invoke(app, ["lens-kl", "--corpus", corpus, "--tokens", "30", "--seq-len", "16", "-m", str(folder)])
    assert table.exit_code == 0 and "tuned lens" in table.stdout


@pytest.mark.slow
def test_default_model_tuned_lens_beats_logit_lens_on_held_out_text(default_model, tmp_path):
    lens = train_tuned_lens(default_model, "builtin", tokens=3000, seq_len=128, folder=tmp_path)
    result = lens_kl(default_model, "builtin", split="test", tokens=63, seq_len=64, lens=lens)
    for layer, logit_kl, tuned_kl in zip(result.layers[:-1], result.logit_lens, result.tuned_lens, strict=False):
        assert tuned_kl < logit_kl, (layer, tuned_kl, logit_kl)
    assert result.logit_lens[-1] <= 1e-5 and result.tuned_lens[-1] == result.logit_lens[-1]
