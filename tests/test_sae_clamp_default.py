"""On the real offline default model (Gemma 3 270M) with a random SAE that fits it (no trained one is
assumed): the splice is exact, generation with a clamp equals a forward pass with it, the views run,
and discovery lists the published Gemma Scope 2 SAEs for this model."""

from __future__ import annotations

import pytest
import torch

from glasslab.dictionaries.catalog import available_saes
from glasslab.dictionaries.loading import load_sae
from glasslab.interventions.splice import FeatureEdit, SAESplice
from glasslab.methods.features.clamp import clamp_features
from glasslab.methods.features.dashboard import feature_dashboard
from glasslab.methods.features.encode import sae_features
from tests.test_sae_splice import random_sae
from tests.tolerance import assert_greedy

pytestmark = pytest.mark.slow
PROMPT = "The capital of France is"


def test_default_model_splice_clamp_and_views(default_model):
    model = default_model
    sae = load_sae(random_sae(model, hook="blocks.6.resid_post", d_sae=1024), model)
    clean = model.run(PROMPT).logits
    assert torch.equal(model.run(PROMPT, interventions=[SAESplice(sae)]).logits, clean)

    result = sae_features(model, sae, PROMPT, top=3)
    feature = result.tokens[-1].top[0].feature
    n = model.to_tokens(PROMPT).shape[1]
    edit = FeatureEdit(feature, "value", 50.0, position=[n - 1, n + 1])
    clamped = model.generate(PROMPT, max_new_tokens=3, interventions=[SAESplice(sae, [edit])])
    ids = torch.tensor([model.to_tokens(PROMPT)[0].tolist() + clamped.new_token_ids])
    replay = model.run(ids, interventions=[SAESplice(sae, [edit])]).logits[0, n - 1 : -1]
    assert_greedy(replay, clamped.new_token_ids)  # another route (no key/value cache): up to rounding

    side = clamp_features(model, sae, PROMPT, feature, value=50.0, positions=[-1], max_new_tokens=3)
    assert side.clamped_values[0][n - 1] == 50.0 and side.next_token.kl > 0
    dashboard = feature_dashboard(model, sae, feature, sequences=4, seq_len=32, batch_size=4, k=3)
    assert dashboard.tokens == 4 * 31 and len(dashboard.promotes) == 10

    hub = [k.name for k in available_saes(model) if k.source == "hub"]
    assert hub == [f"gemma-scope-2-270m-pt-res/layer_{layer}_width_16k_l0_medium" for layer in (5, 9, 12, 15)]
