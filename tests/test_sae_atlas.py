"""Precomputed dashboards (the atlas): read from the file they equal a live scan of the same text (the
second route), a feature that never fired reads as such, and a damaged or foreign file is refused in one
line; precomputing a trained SAE in the store keeps the labels a person wrote."""

from __future__ import annotations

import json
import random

import pytest
import torch

from glasslab.dictionaries.labels_file import FeatureLabel, read_labels, write_labels
from glasslab.dictionaries.loading import load_sae
from glasslab.errors import InputError
from glasslab.methods.features.atlas import ATLAS_FILE, atlas_of, read_atlas
from glasslab.methods.features.dashboard import feature_dashboards
from glasslab.methods.features.labels import precompute_features
from glasslab.sae import load_sae_folder, save_sae
from tests.test_sae_splice import random_sae
from tests.tiny import WORDS, tiny_model


@pytest.fixture
def saved(tmp_path):
    rng = random.Random(0)
    lines = [json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(30))}) for _ in range(80)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    model = tiny_model("llama")
    folder = save_sae(random_sae(model, d_sae=32), tmp_path / "sae")
    return model, folder, str(corpus)


def _precomputed(model, folder, corpus):
    sae = load_sae_folder(folder)
    precompute_features(model, sae, folder, corpus=corpus, sequences=10, seq_len=16, held_out_sequences=2)
    return load_sae(str(folder), model)


def test_dashboards_read_from_the_atlas_equal_a_live_scan_of_the_same_text(saved):
    model, folder, corpus = saved
    sae = _precomputed(model, folder, corpus)
    atlas = atlas_of(sae)
    assert atlas is not None and atlas.sequences == 10 and "train split" in atlas.corpus
    stored = feature_dashboards(model, sae)
    live = feature_dashboards(
        model, sae, corpus=corpus, split="train", sequences=10, seq_len=16, k=10, window=8, precomputed=False
    )
    assert any(d.contexts for d in stored)
    for a, b in zip(stored, live, strict=True):
        assert (a.feature, a.corpus, a.tokens, a.density) == (b.feature, b.corpus, b.tokens, b.density)
        assert a.max_activation == pytest.approx(b.max_activation, rel=1e-6)
        assert [c.tokens for c in a.contexts] == [c.tokens for c in b.contexts]
        for x, y in zip(a.contexts, b.contexts, strict=True):  # stored in half precision
            torch.testing.assert_close(torch.tensor(x.activations), torch.tensor(y.activations), rtol=2e-3, atol=1e-3)
        assert a.histogram_counts == b.histogram_counts
        if a.feature in atlas.features:  # it keeps promoted tokens among those the corpus uses
            assert {t.token for t in a.promotes} <= {f" {w}" for w in WORDS} | set(WORDS)


def test_a_feature_that_never_fired_reads_as_such_and_options_beyond_the_atlas_scan_live(saved):
    model, folder, corpus = saved
    sae = _precomputed(model, folder, corpus)
    atlas = atlas_of(sae)
    silent = [f for f in range(sae.d_sae) if f not in atlas.features]
    if silent:
        board = feature_dashboards(model, sae, [silent[0]])[0]
        assert board.density == 0 and not board.contexts and board.tokens == atlas.tokens
    # More contexts than were kept, or another text, is a live scan (its own corpus and count).
    board = feature_dashboards(model, sae, [atlas.features[0]], corpus=corpus, sequences=3, seq_len=16)[0]
    assert board.sequences == 3


def test_precompute_keeps_a_person_s_labels(saved):
    model, folder, corpus = saved
    write_labels(folder, {3: FeatureLabel("my reading", "user")})
    _precomputed(model, folder, corpus)
    labels = read_labels(folder)
    assert labels[3].label == "my reading" and labels[3].source == "user"
    assert any(entry.source == "auto" for entry in labels.values())


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(b"not a safetensors file"),
        lambda path: path.write_bytes(path.read_bytes()[:200]),
    ],
    ids=["garbage", "truncated"],
)
def test_a_damaged_atlas_is_a_one_line_error(saved, damage):
    model, folder, corpus = saved
    _precomputed(model, folder, corpus)
    damage(folder / ATLAS_FILE)
    with pytest.raises(InputError, match="dashboards file"):
        read_atlas(folder, load_sae_folder(folder))


def test_an_atlas_of_another_sae_is_refused(saved, tmp_path):
    model, folder, corpus = saved
    _precomputed(model, folder, corpus)
    other = save_sae(random_sae(model, d_sae=48), tmp_path / "other")
    (other / ATLAS_FILE).write_bytes((folder / ATLAS_FILE).read_bytes())
    with pytest.raises(InputError, match="another SAE"):
        read_atlas(other, load_sae_folder(other))
