"""Attribution patching: the estimate against finite differences of real patches, and against real patching."""

from __future__ import annotations

import json

import pytest
import torch

import glasslab as gl
from glasslab.methods.metrics import make_metric
from glasslab.methods.patch.attribution_patching import attribution_patching, pearson

from .tiny import tiny_model

CLEAN = "when mary and john went to the store john gave a drink to"
CORRUPTED = "when mary and john went to the store mary gave a drink to"
KW = dict(target="mary", versus="john")


def finite_difference(model, site, cell, *, noising=False, eps=1e-3):
    """d metric / d alpha at alpha = 0 for the patch base + alpha * (source - base) at one cell (central)."""
    metric = make_metric(model, "logit_diff", **KW)
    base, other = (CLEAN, CORRUPTED) if noising else (CORRUPTED, CLEAN)
    hook = f"blocks.{cell['layer']}.{site}"
    a, b = model.run(base, cache=[hook]).cache[hook], model.run(other, cache=[hook]).cache[hook]
    values = []
    for alpha in (eps, -eps):
        patch = gl.Patch(hook, source=a + alpha * (b - a), head=cell["head"], position=cell["position"])
        values.append(float(metric(model, model.run(base, interventions=[patch]))[0]))
    return (values[0] - values[1]) / (2 * eps)


@pytest.mark.parametrize(
    ("family", "site"),
    [
        ("gpt2", "resid_pre"),
        ("gpt_neox", "mlp_out"),
        ("llama", "attn.k"),
        ("qwen2", "attn.q"),
        ("gemma2", "attn.pattern"),
        ("gemma3", "attn.head_out"),
        ("gemma3", "resid_mid"),
        ("gemma3", "attn.v"),
    ],
)
def test_estimate_is_the_directional_derivative(family, site):
    """Second route: the effect (a' - a) · grad equals the slope of the metric along the real patch."""
    model = tiny_model(family)
    result = attribution_patching(model, CLEAN, CORRUPTED, **KW, site=site)
    cells = result.cells
    chosen = sorted(range(len(cells)), key=lambda i: -abs(cells[i]["raw"] - result.corrupted_value))[:3]
    for i in chosen:
        effect = cells[i]["raw"] - result.corrupted_value
        assert effect == pytest.approx(finite_difference(model, site, cells[i]), rel=2e-2, abs=2e-4)


def test_noising_estimate_and_one_position():
    model = tiny_model("llama")
    result = attribution_patching(model, CLEAN, CORRUPTED, **KW, site="attn.z", position=-1, noising=True)
    assert result.mode == "noising" and {c["position"] for c in result.cells} == {13}
    for cell in result.cells[:4]:
        effect = cell["raw"] - result.clean_value
        assert effect == pytest.approx(finite_difference(model, "attn.z", cell, noising=True), rel=2e-2, abs=2e-4)


def test_compare_reports_correlation_with_real_patching():
    model = tiny_model("gemma3")
    result = attribution_patching(model, CLEAN, CORRUPTED, **KW, site="attn.head_out", compare=True)
    assert result.real is not None and len(result.real.cells) == len(result.cells)
    # float64, as the method keeps them: a float32 copy would move the correlation by its own rounding
    estimate = torch.tensor([c["raw"] for c in result.cells], dtype=torch.float64)
    real = torch.tensor([c["raw"] for c in result.real.cells], dtype=torch.float64)
    assert result.correlation == pytest.approx(pearson(estimate, real))
    assert result.correlation > 0.9  # small per-head patches are nearly linear
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "attribution_patching" and data["real"]["kind"] == "activation_patching"
    assert len(result.figure().panels) == 2 and "attribution patching" in result._repr_html_()


def test_grad_mode_left_as_it_was():
    model = tiny_model("gpt2")
    with torch.no_grad():
        attribution_patching(model, CLEAN, CORRUPTED, **KW, site="attn_out")
    assert torch.is_grad_enabled()
    assert not any(p.requires_grad for p in model.hf.parameters())


@pytest.mark.slow
def test_default_model_correlation(default_model):
    """On IOI, per-head outputs are well approximated; the residual stream at the name position is not."""
    clean = "When Mary and John went to the store, John gave a drink to"
    corrupted = "When Mary and John went to the store, Mary gave a drink to"
    kw = dict(target=" Mary", versus=" John", compare=True)
    heads = attribution_patching(default_model, clean, corrupted, site="attn.z", **kw)
    assert heads.correlation > 0.9
