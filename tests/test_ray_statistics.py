"""Corpus statistics summed in units: the unit-wise sums equal one direct computation (no Ray), partial sums
are added in unit order whatever order they arrive in, and on a local Ray cluster of two workers the key
statistics (for editing) and the corpus means (for mean ablation) are the local ones."""

from __future__ import annotations

import json
import random

import pytest
import torch

import glasslab as gl
from glasslab.cluster import ClusterSpec
from glasslab.data import SequenceUnit, batches, load_corpus, packed_sequences
from glasslab.errors import InputError
from glasslab.methods import corpus_sums
from glasslab.methods.corpus_sums import PartialSums, SumJob, plan_units, sum_units
from glasslab.methods.editing.stats import key_statistics
from glasslab.methods.intervene.ablation import ablate
from glasslab.methods.intervene.ablation_engine import mean_activations
from glasslab.operations.edit import edit_facts
from tests.ray_support import folder_model, local_cluster
from tests.tiny import WORDS, tiny_model

LAYERS = [0, 2]
HOOKS = ["blocks.0.mlp.post", "blocks.1.attn.z"]
SIZES = dict(seq_len=16, batch_size=2)  # units of 8 batches: 16 sequences
KEY_TOKENS = 40 * 15  # 40 sequences after BOS: units of 16 + 16 + 8
MEAN_SEQUENCES = 40
FLOAT64 = 1e-12  # float64 rounding of a few hundred additions, relative to the values' scale


def documents(n: int = 150) -> list[str]:
    rng = random.Random(3)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for _ in range(n)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in documents()))
    return str(path)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A store of this module's own (set before Ray starts, so its workers share it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(tmp_path_factory.mktemp("store")))
        yield


def assert_close(got: torch.Tensor, expected: torch.Tensor, rel: float = FLOAT64) -> None:
    scale = float(expected.abs().max())
    assert scale > 0 and torch.allclose(got.double(), expected.double(), rtol=0, atol=rel * scale)


def direct_rows(model: gl.Model, corpus: str, hook: str, sequences: int) -> torch.Tensor:
    """The hook's activations at every non-BOS token of the packed sequences, one row per token, float64."""
    rows = []
    for batch in batches(packed_sequences(model, load_corpus(corpus), SIZES["seq_len"], limit=sequences), 2):
        act = model.run(batch, cache=[hook]).cache[hook][:, 1:]
        rows.append(act.reshape(act.shape[0] * act.shape[1], -1).double())
    return torch.cat(rows)


def test_unit_wise_statistics_equal_a_direct_computation(home, corpus):
    model = tiny_model("llama")
    assert len(list(plan_units(model, load_corpus(corpus), 16, 40, 2))) == 3  # several units to add up
    stats = key_statistics(model, LAYERS, corpus=corpus, split=None, tokens=KEY_TOKENS, cache=False, **SIZES)
    for layer in LAYERS:
        keys = direct_rows(model, corpus, f"blocks.{layer}.mlp.post", 40)
        assert stats[layer].tokens == keys.shape[0] == KEY_TOKENS
        assert_close(stats[layer].moment, keys.T @ keys / keys.shape[0])
    means = mean_activations(model, HOOKS, corpus=corpus, sequences=MEAN_SEQUENCES, **SIZES)
    assert means.tokens == 40 * 15
    for hook in HOOKS:
        rows = direct_rows(model, corpus, hook, MEAN_SEQUENCES)
        # float32 means: the float64 mean rounded once
        assert_close(means.values[hook].flatten(), rows.mean(0), rel=1e-6)


class Given(SumJob):
    """A job whose partial sums are given: 1, then 1e16, then -1e16. Added in unit order they make 0 (the 1 is
    lost in 1 + 1e16); in the reverse order they make 1."""

    def run(self, model: gl.Model | None, unit: SequenceUnit) -> PartialSums:
        value = (1.0, 1e16, -1e16)[unit.index]
        return PartialSums({"x": torch.tensor(value, dtype=torch.float64)}, unit.index + 1)


def test_partial_sums_are_added_in_unit_order_whatever_order_they_arrive_in(monkeypatch):
    def backwards(job, units, **options):
        done = [(unit, job.run(None, unit)) for unit in units]
        yield from reversed(done)

    monkeypatch.setattr(corpus_sums, "run_units", backwards)
    units = [SequenceUnit(i, i, torch.zeros(1, 2, dtype=torch.long)) for i in range(3)]
    total = sum_units(Given(), units, model=None, spec=ClusterSpec(), description="", sequences=3)
    assert float(total.sums["x"]) == 0.0 and total.count == 6


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> gl.Model:
    return folder_model(tmp_path_factory)


@pytest.fixture(scope="module")
def cluster(home):
    with local_cluster() as spec:
        yield spec


def test_key_statistics_on_ray_are_the_local_ones_and_cached_alike(model, corpus, cluster):
    options = dict(corpus=corpus, split=None, tokens=KEY_TOKENS, **SIZES)
    local = key_statistics(model, LAYERS, cache=False, **options)
    distributed = key_statistics(model, LAYERS, cluster=cluster, **options)
    cached = key_statistics(model, LAYERS, **options)
    for layer in LAYERS:
        assert not distributed[layer].from_cache and distributed[layer].tokens == local[layer].tokens
        assert_close(distributed[layer].moment, local[layer].moment)
        assert cached[layer].from_cache and cached[layer].path == local[layer].path
        assert torch.equal(cached[layer].moment, distributed[layer].moment)


FACT = dict(subject="the cat", prompt="the cat sat on the", target=" park", target_true=" mat")


def test_an_edit_with_a_cluster_measures_its_key_statistics_there(model, cluster):
    edit = dict(method="memit", layers=[0, 1], stats_tokens=300, steps=1, fluency=False, **FACT)
    evaluation = edit_facts(model, cluster=cluster, **edit)
    assert evaluation.edit.layers == (0, 1)
    cached = key_statistics(model, [0, 1], tokens=300)  # what the edit measured on Ray, read from the store
    local = key_statistics(model, [0, 1], tokens=300, cache=False)
    for layer in (0, 1):
        assert cached[layer].from_cache
        assert_close(cached[layer].moment, local[layer].moment)


def test_corpus_means_on_ray_are_the_local_ones(model, corpus, cluster):
    local = mean_activations(model, HOOKS, corpus=corpus, sequences=MEAN_SEQUENCES, **SIZES)
    distributed = mean_activations(
        model, HOOKS, corpus=corpus, sequences=MEAN_SEQUENCES, cluster="local", workers=2, **SIZES
    )
    assert distributed.tokens == local.tokens and distributed.source == local.source
    for hook in HOOKS:
        assert_close(distributed.values[hook], local.values[hook])


def test_mean_ablation_with_its_corpus_pass_on_ray_is_the_local_one(model, corpus, cluster):
    options = dict(target=" the", heads=[(1, 0)], mlp_layers=[0], how="mean", corpus=corpus)
    local = ablate(model, "the cat sat on the", **options)
    distributed = ablate(model, "the cat sat on the", cluster=cluster, workers=2, **options)
    assert distributed.reference == local.reference and "tokens" in str(local.reference)
    scale = max(1.0, abs(local.clean))
    assert abs(distributed.ablated - local.ablated) <= 1e-5 * scale
    with pytest.raises(InputError, match="a cluster runs mean ablation's pass over a corpus"):
        ablate(model, "the cat sat on the", target=" the", heads=[(1, 0)], cluster=cluster)


def test_a_model_not_loaded_from_a_folder_is_refused_on_a_cluster(corpus, cluster):
    model = tiny_model("llama")
    with pytest.raises(InputError, match="not loaded from a folder"):
        key_statistics(model, 0, corpus=corpus, split=None, tokens=30, cache=False, cluster=cluster, **SIZES)
    with pytest.raises(InputError, match="not loaded from a folder"):
        mean_activations(model, HOOKS, corpus=corpus, sequences=4, cluster=cluster, **SIZES)
    with pytest.raises(InputError, match="not loaded from a folder"):
        edit_facts(model, layer=1, stats_tokens=300, steps=1, fluency=False, cluster=cluster, **FACT)
