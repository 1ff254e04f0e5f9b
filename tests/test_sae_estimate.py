"""The SAE training-time estimate: its count of the sequences the training's forward passes run against the
training's own count, its total as the sum of its parts, and its bookkeeping of text reading on a fake clock.
How close the estimate comes to the real time is measured in benchmarks/bench_sae_estimate.py: a test cannot
assert it on a machine that other work shares."""

from __future__ import annotations

import pytest

from glasslab.dictionaries.train import TrainConfig
from glasslab.methods.features.estimate import _TimedRuns, estimate_training
from glasslab.methods.features.training import train_sae

from .tiny import tiny_model


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "home"))
    return tmp_path


def test_the_sequences_counted_are_the_ones_the_training_runs(store):
    model = tiny_model("llama")
    config = TrainConfig(
        "blocks.1.resid_post", expansion=4, k=4, tokens=256 * 24, harvest_tokens=6000, buffer_tokens=6000,
        batch_size=256, seq_len=64,
    )  # fmt: skip
    estimate = estimate_training(model, config, evaluate_tokens=512)
    counted = _TimedRuns(model)
    train_sae(counted, config, out=store / "sae", evaluate_tokens=512, evaluate_loss_tokens=0)
    # 6000 rows in whole batches of 16 x 63 rows: 6 batches; 512 held-out rows: 9 sequences, whole batches of 8.
    assert (estimate.harvest_sequences, estimate.evaluate_sequences, estimate.steps) == (96, 16, 24)
    assert counted.sequences == estimate.harvest_sequences + estimate.evaluate_sequences
    # The total is its parts: each measured rate times the planned count.
    assert estimate.harvest_s == pytest.approx(96 * estimate.sequence_s)
    assert estimate.evaluate_s == pytest.approx(16 * estimate.sequence_s)
    assert estimate.train_s == pytest.approx(24 * estimate.step_s)
    assert estimate.seconds == pytest.approx(
        estimate.fixed_s + estimate.text_s + estimate.harvest_s + estimate.train_s + estimate.evaluate_s
    )
    assert min(estimate.sequence_s, estimate.step_s, estimate.text_s) > 0 and estimate.fixed_s >= 0


class SlowText:
    """Documents whose reading costs ``per_document`` seconds on a fake clock, and ``first_read`` more on the
    first pass only (a cold cache that a training started right after the estimate finds warm)."""

    def __init__(self, documents: list[str], clock: list[float], per_document: float, first_read: float) -> None:
        self.documents, self.clock, self.per_document, self.first_read = documents, clock, per_document, first_read
        self.reads = 0

    def __iter__(self):
        self.reads += 1
        if self.reads == 1:
            self.clock[0] += self.first_read
        for document in self.documents:
            self.clock[0] += self.per_document
            yield document


def test_text_is_timed_warm_and_counted_once(store, monkeypatch):
    """Reading text is timed on a fake clock that only the documents move, so the test checks the
    estimate's bookkeeping, not this machine's speed: the cold first read is not counted, and the text the
    probe reads again is not counted a second time in the fixed part."""
    import glasslab.methods.features.estimate as estimate_module

    clock = [0.0]
    monkeypatch.setattr(estimate_module.time, "perf_counter", lambda: clock[0])  # only the documents move it
    documents = SlowText(["the cat sat on the mat and the dog ran to the park"] * 40, clock, 10.0, 1000.0)
    config = TrainConfig(
        "blocks.0.resid_post", expansion=2, k=4, tokens=128 * 3, harvest_tokens=100_000, buffer_tokens=100_000,
        batch_size=128, seq_len=64, model_batch=3,
    )  # fmt: skip
    estimate = estimate_training(tiny_model("gpt2"), config, documents=documents)
    assert documents.reads == 3  # counted, timed, then the probe
    assert 400 <= estimate.text_s < 1000  # the timed read: 40 documents at 10 s; not the cold one's 1000 s
    assert estimate.fixed_s < 10  # the probe read every document again (400 s): none of it is fixed


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
