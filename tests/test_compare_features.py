"""SAE features across layers and across prompts, with random SAEs on tiny models: gradient x activation
against a finite difference and against zeroing the feature through glasslab.sae's splice."""

from __future__ import annotations

import pytest
import torch

from glasslab.errors import InputError
from glasslab.interventions.splice import FeatureEdit, SAESplice
from glasslab.methods.compare.feature_influence import feature_influence
from glasslab.methods.compare.prompts import compare_prompts
from glasslab.sae import SAE, SAEConfig
from glasslab.views.html import figure_html

from .tiny import tiny_model

PROMPT = "when mary and john went to the store john gave a drink to"


def random_sae(hook: str, seed: int, architecture: str = "standard", d_sae: int = 48) -> SAE:
    """An SAE with random weights scaled so a good share of its features fire on the tiny models."""
    g = torch.Generator().manual_seed(seed)
    sae = SAE(SAEConfig(architecture, 32, d_sae, hook, k=8 if architecture == "topk" else None))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(32, d_sae, generator=g) / 32**0.5)
        sae.W_dec.copy_(torch.randn(d_sae, 32, generator=g) / d_sae**0.5)
        sae.b_enc.copy_(0.1 * torch.randn(d_sae, generator=g))
    return sae


def downstream_value(model, sae_up, sae_down, edits, feature: int, position: int = -1) -> float:
    run = model.run(PROMPT, cache=[sae_down.hook], interventions=[SAESplice(sae_up, edits)])
    return float(sae_down.encode(sae_down.read(run.cache[sae_down.hook]))[0, position, feature])


@pytest.mark.parametrize("family", ["gemma3", "llama"])
def test_influence_is_the_derivative_and_agrees_with_patching(family):
    model = tiny_model(family)
    up, down = random_sae("blocks.0.resid_post", 0), random_sae("blocks.2.resid_post", 1)
    result = feature_influence(model, PROMPT, up, down, downstream_top=3, max_edges=12, verify=6)
    assert len(result.edges) == 12 and len(result.downstream) == 3
    # the graph is ranked, and its downstream activations are the model's own (the splice is exact)
    assert [abs(e.weight) for e in result.edges] == sorted((abs(e.weight) for e in result.edges), reverse=True)
    plain = model.run(PROMPT, cache=[down.hook]).cache[down.hook]
    own = down.encode(plain)[0, -1]
    for node in result.downstream:
        assert node.activation == pytest.approx(float(own[node.feature]), abs=1e-5)
    # second route 1: a finite difference, scaling the source feature by 1 - eps at every position
    eps = 0.02
    for edge in result.edges[:3]:
        clean = downstream_value(model, up, down, [], edge.target)
        scaled = downstream_value(model, up, down, [FeatureEdit(edge.source, "scale", 1 - eps)], edge.target)
        assert (clean - scaled) / eps == pytest.approx(edge.weight, rel=0.05, abs=1e-4)
    # second route 2: zeroing the feature (patching), recorded for the strongest edges
    checked = [e for e in result.edges if e.patched is not None]
    assert len(checked) == 6
    for edge in checked:
        zeroed = downstream_value(model, up, down, [FeatureEdit(edge.source, "zero")], edge.target)
        clean = downstream_value(model, up, down, [], edge.target)
        assert edge.patched == pytest.approx(clean - zeroed, abs=1e-5)
    estimate = torch.tensor([e.weight for e in checked])
    real = torch.tensor([e.patched for e in checked])
    assert (estimate.sign() == real.sign()).float().mean() >= 0.8
    assert torch.corrcoef(torch.stack([estimate, real]))[0, 1] > 0.8


def test_graph_json_and_figure():
    model = tiny_model("gpt2")
    up, down = random_sae("blocks.0.resid_mid", 2, "topk"), random_sae("blocks.1.resid_post", 3)
    result = feature_influence(model, PROMPT, up, down, features=[0, 5], max_edges=5, verify=1, position=4)
    data = result.to_dict()
    assert data["kind"] == "feature_influence" and data["position"] == 4
    ids = {n["id"] for n in data["nodes"]}
    assert all(e["source_id"] in ids and e["target_id"] in ids for e in data["edges"])
    assert {e["target"] for e in data["edges"]} <= {0, 5}
    assert "strongest edges" in figure_html(result.figure())


def test_bad_input():
    model = tiny_model("gpt2")
    up, down = random_sae("blocks.0.resid_post", 0), random_sae("blocks.2.resid_post", 1)
    with pytest.raises(InputError, match="does not come before"):
        feature_influence(model, PROMPT, down, up)
    with pytest.raises(InputError, match="out of range"):
        feature_influence(model, PROMPT, up, down, features=[99])
    with pytest.raises(InputError, match="out of range"):
        feature_influence(model, PROMPT, up, down, position=40)
    wide = SAE(SAEConfig("standard", 64, 8, "blocks.0.resid_post"))
    with pytest.raises(InputError, match="wide"):
        feature_influence(model, PROMPT, wide, down)


def test_compare_prompts_with_sae_features():
    model = tiny_model("gemma3")
    sae = random_sae("blocks.1.resid_post", 4)
    other = "when john went to the store john gave a drink to"
    result = compare_prompts(model, PROMPT, other, method="sae", sae=sae, k=5)
    feats_a = sae.encode(model.run(PROMPT, cache=[sae.hook]).cache[sae.hook])[0, -1]
    feats_b = sae.encode(model.run(other, cache=[sae.hook]).cache[sae.hook])[0, -1]
    best = (feats_b - feats_a).abs().topk(5).indices.tolist()
    assert [c.label for c in result.changes] == [f"feature {f}" for f in best]
    for change in result.changes:
        f = int(change.label.split()[1])
        assert change.diff == pytest.approx(float(feats_b[f] - feats_a[f]), abs=1e-5)
    same = compare_prompts(model, PROMPT, PROMPT, method="sae", sae=sae)
    assert max(same.grids[1].diff[0]) == 0.0
