"""The SAE training-time estimate: its total against the measured time of the same tiny training, and its
count of the sequences the training's forward passes run against the training's own count."""

from __future__ import annotations

import time

import pytest

from glasslab.sae.estimate import _TimedRuns, estimate_training
from glasslab.sae.train import TrainConfig, train_sae

from .tiny import tiny_model


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "home"))
    return tmp_path


def test_estimate_is_within_a_factor_of_three_of_the_real_time(store):
    model = tiny_model("llama")
    config = TrainConfig(
        "blocks.1.resid_post", expansion=4, k=4, tokens=256 * 24, harvest_tokens=6000, buffer_tokens=6000,
        batch_size=256, seq_len=64,
    )  # fmt: skip
    estimate = estimate_training(model, config, evaluate_tokens=512)
    counted = _TimedRuns(model)
    start = time.perf_counter()
    train_sae(counted, config, out=store / "sae", evaluate_tokens=512, evaluate_loss_tokens=0)
    actual = time.perf_counter() - start
    # 6000 rows in whole batches of 16 x 63 rows: 6 batches; 512 held-out rows: 9 sequences, whole batches of 8.
    assert (estimate.harvest_sequences, estimate.evaluate_sequences, estimate.steps) == (96, 16, 24)
    assert counted.sequences == estimate.harvest_sequences + estimate.evaluate_sequences
    assert actual / 3 < estimate.seconds < 3 * actual, (estimate.to_dict(), actual)


def test_a_short_text_is_counted_to_its_end(store):
    model = tiny_model("gpt2")
    documents = ["the cat sat on the mat and the dog ran to the park"] * 40  # 40 x 13 tokens: 8 sequences of 64
    config = TrainConfig(
        "blocks.0.resid_post", expansion=2, k=4, tokens=128 * 3, harvest_tokens=100_000, buffer_tokens=100_000,
        batch_size=128, seq_len=64, model_batch=3,
    )  # fmt: skip
    estimate = estimate_training(model, config, documents=documents)
    counted = _TimedRuns(model)
    train_sae(counted, config, out=store / "sae", documents=documents, evaluate_tokens=0)
    assert estimate.harvest_sequences == counted.sequences == 8
    assert estimate.evaluate_sequences == 0 and estimate.evaluate_s == 0
    assert estimate.seconds == pytest.approx(
        estimate.fixed_s + estimate.text_s + 8 * estimate.sequence_s + 3 * estimate.step_s
    )
