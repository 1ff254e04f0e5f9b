"""Corpus scans split into units: partial scans merged in any order equal one pass in order (no Ray), and on
a local Ray cluster of two workers a scan of an SAE's features or of neurons gives the local result."""

from __future__ import annotations

import itertools
import json
import random

import pytest
import torch

import glasslab as gl
from glasslab.data import SequenceUnit
from glasslab.errors import InputError
from glasslab.methods.features.basis import FeatureBasis, NeuronBasis
from glasslab.methods.features.labels import describe_features
from glasslab.methods.features.scan import FeatureScan, scan_features
from glasslab.methods.features.scan_parts import Histogram, ScanJob, ScanMerger, ScanState, plan_units
from tests.ray_support import folder_model, local_cluster
from tests.tiny import WORDS, tiny_model, tiny_sae
from tests.tolerance import slack

SCAN = dict(sequences=40, seq_len=16, batch_size=2, k=5, window=3, bins=8)  # units of 16: 16 + 16 + 8 sequences


def documents(n: int = 120) -> list[str]:
    rng = random.Random(2)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for _ in range(n)]


class CoarseBasis(FeatureBasis):
    """The residual stream (under 0.1 in the tiny models) rounded to hundredths and cut at 0: many sequences
    tie at a feature's maximum, so the top contexts show whether the earlier sequence wins a tie wherever its
    unit was merged."""

    hook, size, signed = "blocks.1.resid_post", 32, False

    def values(self, act: torch.Tensor) -> torch.Tensor:
        return (torch.round(act.float() * 100) / 100).clamp_min(0)


def state_fields(state: ScanState) -> dict[str, object]:
    top, histogram = state.top, state.histogram
    return {
        "top_values": top.values,
        "top_sequence": top.sequence,
        "top_position": top.position,
        "window_ids": top.window_ids,
        "window_acts": top.window_acts,
        "fired": state.fired,
        "maximum": state.maximum,
        "counts": histogram.counts,
        "bin_width": histogram.width,
        "token_counts": state.token_counts,
        "tokens": state.tokens,
        "sequences": state.sequences,
    }


@pytest.mark.parametrize("kind", ["coarse", "neurons"])
def test_partial_scans_merged_in_any_order_equal_one_pass_in_order(kind):
    model = tiny_model("llama")
    basis = CoarseBasis() if kind == "coarse" else NeuronBasis(model, 1)
    units = list(plan_units(model, documents(), SCAN["seq_len"], 30, 8))  # 8 + 8 + 8 + 6 sequences
    assert [u.first_sequence for u in units] == [0, 8, 16, 24]
    job = ScanJob(basis, tuple(range(basis.size)), 4, 2, 6, 1, 2)
    parts = [job.run(model, unit) for unit in units]
    whole = job.run(model, SequenceUnit(0, 0, torch.cat([u.tokens for u in units])))  # one pass, same batches
    for order in itertools.islice(itertools.permutations(range(len(units))), 0, None, 5):
        merger = ScanMerger(ScanState(basis.size, 4, 2, 6, model.vocab_size, signed=basis.signed))
        for i in order:
            merger.add(i, parts[i])
        for name, value in state_fields(whole).items():
            merged = state_fields(merger.state)[name]
            same = torch.equal(merged, value) if isinstance(value, torch.Tensor) else merged == value
            assert same, f"{name} differs after merging units in the order {order}"
        assert torch.allclose(merger.state.total, whole.total, rtol=1e-12, atol=0)
    sequences = whole.top.sequence[whole.top.values > 0]
    assert len(sequences.unique()) > 8  # the top contexts come from several units


def test_histograms_of_parts_merge_into_the_histogram_of_the_whole():
    generator = torch.Generator().manual_seed(0)
    chunks = [torch.randn(40, 3, generator=generator) * scale for scale in (0.01, 5.0, 0.3, 90.0)]
    for chunk in chunks:
        chunk[:, 2] = 0  # a feature that never fires
    whole = Histogram(3, 6)
    parts = []
    for chunk in chunks:
        whole.add(chunk)
        parts.append(Histogram(3, 6))
        parts[-1].add(chunk)
    for order in ([0, 1, 2, 3], [3, 1, 0, 2], [2, 0, 3, 1]):
        merged = Histogram(3, 6)
        for i in order:
            merged.merge(parts[i])
        assert torch.equal(merged.counts, whole.counts) and torch.equal(merged.width, whole.width)
    assert int(whole.counts[:2].sum()) == int((torch.cat(chunks)[:, :2] > 0).sum())
    assert float(parts[0].width[0]) < float(whole.width[0])  # widths really differed before the merge


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> gl.Model:
    return folder_model(tmp_path_factory)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in documents()))
    return str(path)


@pytest.fixture(scope="module")
def cluster():
    with local_cluster() as spec:
        yield spec


def assert_same_scan(got: FeatureScan, expected: FeatureScan) -> None:
    """The same sequences, positions, windows and counts; values equal up to float rounding."""
    assert (got.corpus, got.features, got.sequences, got.tokens) == (
        expected.corpus,
        expected.features,
        expected.sequences,
        expected.tokens,
    )
    for name in ("top_sequence", "top_position", "window_ids", "fired", "counts", "bin_width", "token_counts"):
        assert torch.equal(getattr(got, name), getattr(expected, name)), name
    for name in ("top_values", "window_acts", "total", "maximum"):
        ours, theirs = getattr(got, name), getattr(expected, name)
        finite = theirs.isfinite()
        assert torch.equal(ours.isfinite(), finite), name
        assert torch.allclose(ours[finite], theirs[finite], atol=slack(theirs[finite]), rtol=0), name


def test_a_scan_of_sae_features_on_ray_gives_the_local_result(model, corpus, cluster):
    sae = tiny_sae()
    local = scan_features(model, sae, corpus=corpus, **SCAN)
    distributed = scan_features(model, sae, corpus=corpus, cluster=cluster, **SCAN)
    assert local.sequences == 40 and int((local.top_values > 0).sum()) > 0
    assert_same_scan(distributed, local)


def test_a_scan_of_neurons_on_ray_gives_the_local_result(model, corpus, cluster):
    basis = NeuronBasis(model, 1)
    options = {**SCAN, "include_bos": True, "bins": 4}
    local = scan_features(model, basis, [0, 7, 63], corpus=corpus, **options)
    distributed = scan_features(model, basis, [0, 7, 63], corpus=corpus, cluster="local", workers=2, **options)
    assert_same_scan(distributed, local)


def test_labels_and_dashboards_described_on_ray_are_the_local_ones(model, corpus, cluster):
    sae = tiny_sae()
    options = dict(corpus=corpus, sequences=24, seq_len=16, contexts=4, held_out_sequences=8)
    local = describe_features(model, sae, **options)
    distributed = describe_features(model, sae, cluster="local", workers=2, **options)
    assert local.labels and {f: e.to_json() for f, e in distributed.labels.items()} == {
        f: e.to_json() for f, e in local.labels.items()
    }
    assert distributed.atlas.features == local.atlas.features and distributed.atlas.sequences == 24
    assert_same_scan(distributed.atlas.scan(local.atlas.features), local.atlas.scan(local.atlas.features))


def test_a_model_not_loaded_from_a_folder_is_refused_on_a_cluster(corpus, cluster):
    with pytest.raises(InputError, match="not loaded from a folder"):
        scan_features(tiny_model("llama"), tiny_sae(), corpus=corpus, cluster=cluster, **SCAN)
