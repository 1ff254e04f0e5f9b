"""Feature dashboards: the streamed scan equals a brute-force scan of the same corpus, the histogram stays
exact while it grows, decoder effects agree with the neuron view, labels and Neuronpedia links show."""

from __future__ import annotations

import json
import random

import httpx
import numpy as np
import pytest
import torch

from glasslab.data import load_corpus, packed_sequences
from glasslab.dictionaries.labels_file import LABELS_FILE, FeatureLabel, labels_json
from glasslab.dictionaries.loading import load_sae
from glasslab.errors import InputError
from glasslab.methods.features.dashboard import (
    decoder_logit_effects,
    feature_dashboard,
    feature_dashboards,
    fetch_neuronpedia_labels,
)
from glasslab.methods.features.scan import scan_features
from glasslab.methods.features.scan_parts import Histogram
from glasslab.methods.observe.neurons import _output_tokens
from glasslab.sae import save_sae
from tests.test_sae_splice import random_sae
from tests.tiny import WORDS, tiny_model

SCAN = dict(sequences=11, seq_len=16, batch_size=4, k=4, window=3, bins=8)


@pytest.fixture
def corpus(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "words.txt"
    path.write_text(" ".join(rng.choice(WORDS) for _ in range(600)))
    return str(path)


def brute_force(model, sae, corpus, skip=1):
    """Every activation of every feature on every sequence, kept whole. Computed in the scan's batches: the
    values are then bit for bit the scan's, so its maxima and counts can be compared exactly (another batch
    size may round differently on some CPUs)."""
    seqs = torch.stack(list(packed_sequences(model, load_corpus(corpus), SCAN["seq_len"], limit=SCAN["sequences"])))
    acts = [model.run(batch, cache=[sae.hook]).cache[sae.hook] for batch in seqs.split(SCAN["batch_size"])]
    return seqs, torch.cat([sae.encode(act).float() for act in acts])  # [S, L, d_sae]


def test_streamed_scan_equals_a_brute_force_scan(corpus):
    model = tiny_model("llama")
    sae = random_sae(model, d_sae=24)
    features = [0, 5, 7, 23]
    scan = scan_features(model, sae, features, corpus=corpus, **SCAN)
    seqs, acts = brute_force(model, sae, corpus)
    w = SCAN["window"]
    assert scan.sequences == seqs.shape[0] and scan.tokens == seqs.shape[0] * (seqs.shape[1] - 1)
    for i, feature in enumerate(features):
        a = acts[:, 1:, feature]  # BOS left out
        assert int(scan.fired[i]) == int((a > 0).sum())
        assert float(scan.total[i]) == pytest.approx(float(a.double().sum()), rel=1e-6)
        maxima, where = a.max(dim=1)
        ranked = sorted(range(len(maxima)), key=lambda s: (-float(maxima[s]), s))
        expected = [s for s in ranked if maxima[s] > 0][: SCAN["k"]]
        got = scan.top_sequence[i][scan.top_values[i] > -float("inf")].tolist()
        assert got == expected, feature
        for j, s in enumerate(expected):
            p = int(where[s]) + 1
            assert int(scan.top_position[i, j]) == p and float(scan.top_values[i, j]) == float(maxima[s])
            lo, hi = max(0, p - w), min(seqs.shape[1], p + w + 1)
            inside = scan.window_ids[i, j] >= 0
            assert scan.window_ids[i, j][inside].tolist() == seqs[s, lo:hi].tolist()
            torch.testing.assert_close(scan.window_acts[i, j][inside], acts[s, lo:hi, feature])
        positive = a[a > 0].double().numpy()
        width = float(scan.bin_width[i])
        counts, _ = np.histogram(positive, bins=width * np.arange(SCAN["bins"] + 1))
        assert scan.counts[i].tolist() == counts.tolist() and counts.sum() == len(positive)
    assert int((scan.top_values > -float("inf")).sum(1).max()) == SCAN["k"]  # some feature fills its k contexts
    everything = scan_features(model, sae, None, corpus=corpus, **SCAN)
    assert torch.equal(everything.top_values[features], scan.top_values)
    assert torch.equal(everything.counts[features], scan.counts)


def test_growing_histogram_stays_exact():
    generator = torch.Generator().manual_seed(0)
    histogram = Histogram(3, 10)
    seen = []
    for scale in (0.01, 0.5, 3.0, 100.0, 1.0):  # maxima grow, then shrink
        values = torch.randn(50, 3, generator=generator) * scale
        values[:, 2] = 0  # a feature that never fires
        histogram.add(values)
        seen.append(values)
    everything = torch.cat(seen).double()
    for f in range(2):
        width = float(histogram.width[f])
        assert float(everything[:, f].max()) < 10 * width
        counts, _ = np.histogram(everything[:, f][everything[:, f] > 0].numpy(), bins=width * np.arange(11))
        assert histogram.counts[f].tolist() == counts.tolist()
    assert histogram.counts[2].sum() == 0 and float(histogram.width[2]) == 0.0


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_decoder_effects_of_a_one_neuron_feature_equal_the_neurons_own(family):
    model = tiny_model(family)
    sae = random_sae(model, hook="blocks.1.mlp.post", d_sae=16)
    with torch.no_grad():
        sae.W_dec[3] = 0
        sae.W_dec[3, 11] = 2.0  # feature 3 writes 2 x neuron 11
    promotes, suppresses, note = decoder_logit_effects(model, sae, [3], 5)
    theirs_up, theirs_down, post_norm = _output_tokens(model, 1, 11, 5)
    assert [t.token_id for t in promotes[0]] == [t.token_id for t in theirs_up]
    assert [t.token_id for t in suppresses[0]] == [t.token_id for t in theirs_down]
    np.testing.assert_allclose([t.value for t in promotes[0]], [2 * t.value for t in theirs_up], rtol=1e-5)
    assert bool(note) == post_norm
    q_sae = random_sae(model, hook="blocks.1.attn.q", d_sae=8)
    assert decoder_logit_effects(model, q_sae, [0], 5)[0] == [[]]


def test_dashboard_shows_labels_links_and_renders(corpus, tmp_path):
    model = tiny_model("gpt2")
    sae = random_sae(model, d_sae=24)
    sae.cfg.neuronpedia_id = "tiny-gpt2/1-test"
    feature = int(scan_features(model, sae, corpus=corpus, **SCAN).fired.argmax())
    labels = {feature: FeatureLabel("cats", "auto")}
    folder = save_sae(sae, tmp_path / "sae", extra_files={LABELS_FILE: labels_json(labels)})
    loaded = load_sae(str(folder), model)
    dashboard = feature_dashboard(model, loaded, feature, corpus=corpus, **SCAN)
    assert dashboard.label == FeatureLabel("cats", "auto")
    assert dashboard.neuronpedia == f"https://www.neuronpedia.org/tiny-gpt2/1-test/{feature}"
    assert 0 < dashboard.density <= 1 and len(dashboard.contexts) == SCAN["k"]
    assert sum(dashboard.histogram_counts) == round(dashboard.density * dashboard.tokens)
    assert dashboard.contexts[0].activation == dashboard.max_activation
    data = json.loads(json.dumps(dashboard.to_dict()))
    assert data["kind"] == "sae_feature_dashboard" and data["label"]["label"] == "cats"
    html = dashboard._repr_html_()
    assert "top-activating contexts" in html and "cats" in html and "neuronpedia.org" in html
    assert len(feature_dashboards(model, loaded, [1, 2], corpus=corpus, **SCAN)) == 2
    with pytest.raises(InputError, match="out of range"):
        feature_dashboard(model, loaded, 24, corpus=corpus)
    with pytest.raises(InputError, match="even"):
        feature_dashboard(model, loaded, 1, corpus=corpus, bins=7)


def test_neuronpedia_labels_are_optional_and_quiet(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    model = tiny_model("gpt2")
    sae = random_sae(model, d_sae=24)
    sae.cfg.neuronpedia_id = "tiny-gpt2/1-test"

    def reply(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/feature/tiny-gpt2/1-test/4"
        return httpx.Response(200, json={"explanations": [{"description": " cat words "}]})

    got = fetch_neuronpedia_labels(sae, [4], client=httpx.Client(transport=httpx.MockTransport(reply)))
    assert got == {4: FeatureLabel("cat words", "neuronpedia")}
    fresh = load_sae(sae, model)
    fresh.labels_cache = None
    from glasslab.dictionaries.loading import labels_of

    assert labels_of(fresh)[4].label == "cat words"  # cached in the store, shown offline from now on

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no network")

    assert fetch_neuronpedia_labels(sae, [5], client=httpx.Client(transport=httpx.MockTransport(down))) == {}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch_neuronpedia_labels(sae, [5]) == {}  # offline: no attempt at all
