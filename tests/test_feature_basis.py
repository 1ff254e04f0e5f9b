"""Neurons are the identity basis of the feature view: a neuron's profile is the feature view of
``NeuronBasis``, and equals an SAE's dashboard when that SAE is the identity on ``mlp.post``."""

from __future__ import annotations

import random

import pytest
import torch

from glasslab.dictionaries import SAE
from glasslab.dictionaries.sae_config import SAEConfig
from glasslab.methods.features.basis import DictionaryBasis, NeuronBasis, token_effects
from glasslab.methods.features.dashboard import feature_dashboard
from glasslab.methods.features.scan import contexts_of, scan_features
from glasslab.methods.observe.neurons import neuron_profile
from tests.tiny import WORDS, tiny_model

LAYER, NEURON = 1, 5
OPTIONS = dict(sequences=11, seq_len=12, batch_size=4, k=4, window=3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("corpus") / "words.txt"
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(8)))
    return str(path)


def identity_sae(model) -> SAE:
    """A ReLU SAE on ``mlp.post`` whose features are the neurons (negative values clipped to 0)."""
    width = model.d_mlp
    sae = SAE(SAEConfig("standard", width, width, f"blocks.{LAYER}.mlp.post", model_name=model.name))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(width))
        sae.W_dec.copy_(torch.eye(width))
    return sae


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_neuron_profile_is_the_feature_view_of_the_identity_basis(family, corpus):
    model = tiny_model(family)
    profile = neuron_profile(model, LAYER, NEURON, corpus=corpus, top_tokens=5, **OPTIONS)
    basis = NeuronBasis(model, LAYER)
    scan = scan_features(model, basis, [NEURON], corpus=corpus, **OPTIONS)
    promotes, suppresses, note = token_effects(model, basis, [NEURON], 5)
    assert profile.contexts == contexts_of(scan, 0, model.tokenizer.decode)
    assert profile.max_activation == float(scan.maximum[0])
    assert (profile.promotes, profile.suppresses) == (promotes[0], suppresses[0])
    assert bool(note) == profile.post_norm


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_an_identity_sae_shows_what_the_neuron_profile_shows(family, corpus):
    """An independent check: the SAE path (encode, decoder rows through W_out) meets the neuron path."""
    model = tiny_model(family)
    profile = neuron_profile(model, LAYER, NEURON, corpus=corpus, top_tokens=5, **OPTIONS)
    dashboard = feature_dashboard(
        model, identity_sae(model), NEURON, top_tokens=5, precomputed=False, corpus=corpus, **OPTIONS
    )
    positive = [c for c in profile.contexts if c.activation > 0]
    assert positive, "the chosen neuron should fire somewhere in the corpus"
    assert [c.sequence for c in dashboard.contexts[: len(positive)]] == [c.sequence for c in positive]
    for ours, theirs in zip(dashboard.contexts, positive, strict=False):
        assert ours.tokens == theirs.tokens and ours.centre == theirs.centre
        torch.testing.assert_close(torch.tensor(ours.activations), torch.tensor(theirs.activations).clamp_min(0))
    assert [t.token_id for t in dashboard.promotes] == [t.token_id for t in profile.promotes]
    assert [t.token_id for t in dashboard.suppresses] == [t.token_id for t in profile.suppresses]
    torch.testing.assert_close(
        torch.tensor([t.value for t in dashboard.promotes]), torch.tensor([t.value for t in profile.promotes])
    )


def test_the_bases_name_what_is_out_of_range():
    model = tiny_model("gpt2")
    with pytest.raises(Exception, match="neuron 9999 is out of range"):
        NeuronBasis(model, LAYER).check(9999)
    with pytest.raises(Exception, match="for this SAE"):
        DictionaryBasis(identity_sae(model)).check(-1)
