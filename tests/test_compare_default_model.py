"""On the real offline model (Gemma 3 270M): a copy with one MLP scaled, a side-effect report of ablating an
induction head, and previous-token heads feeding induction heads by K-composition."""

from __future__ import annotations

import copy

import pytest
import torch

import glasslab as gl
from glasslab.methods.compare.composition import head_composition
from glasslab.methods.compare.models import compare_models
from glasslab.methods.compare.side_effects import side_effects
from glasslab.methods.metrics import make_metric

pytestmark = pytest.mark.slow

LAYER = 9  # the MLP changed in the copy
# Its gate projection is halved: scaling the output projection would be undone exactly by Gemma 3's post-MLP
# RMSNorm (scale-invariant), which the first attempt at this test showed (CKA 0.99999998).
TEXT = [
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch.",
    "In 1905, Albert Einstein published four papers that changed physics forever.",
    "To make bread, mix flour, water, salt and yeast, then let the dough rise.",
]


def test_a_copy_with_one_mlp_scaled(default_model):
    edited = gl.Model(
        copy.deepcopy(default_model.hf),
        default_model.tokenizer,
        default_model.arch,
        name="gemma-3-270m, L9 MLP gate x0.5",
    )
    with torch.no_grad():
        edited.block_module(LAYER, "mlp.gate_proj").weight.mul_(0.5)
    result = compare_models(default_model, edited, prompts=TEXT, batch_size=3)
    # nothing before the edit moves: layers 0..8 and the attention of layers 0..9 are the same computation
    assert all(c == pytest.approx(1.0, abs=1e-6) for c in result.cka[:LAYER])
    assert max(max(row) for row in result.head_distance[: LAYER + 1]) < 1e-4
    # from the edit on, representations, attention and predictions change
    assert result.cka[LAYER] < 0.999 and result.kl > 1e-3
    assert max(max(row) for row in result.head_distance[LAYER + 1 :]) > 1e-3
    assert result.loss_a != result.loss_b


def test_side_effects_of_ablating_the_strongest_induction_head(default_model):
    roles = gl.head_roles(default_model, seq_len=20, n_seqs=4)
    layer, head, score = roles.top("induction", 1)[0]
    assert score > 0.5
    repeated = "one two three four five six seven eight nine ten one two three four five six seven eight nine ten"
    ablation = gl.Ablate(f"blocks.{layer}.attn.z", head=head)
    neutral = ["The weather today is", "The capital of France is"]
    result = side_effects(
        default_model, [ablation], prompt=repeated, metric="loss", sequences=2, seq_len=32, neutral=neutral
    )
    with default_model.intervene(ablation):
        by_hand = float(make_metric(default_model, "loss")(default_model, default_model.run(repeated))[0])
    assert result.target.after == pytest.approx(by_hand, abs=1e-4)
    assert result.target.change > 0  # copying the repeat gets harder
    assert result.corpus.kl_mean > 0 and len(result.neutral) == 2


def test_previous_token_heads_feed_induction_heads(default_model):
    roles = gl.head_roles(default_model, seq_len=30, n_seqs=4)
    result = head_composition(default_model, roles=roles, role_threshold=0.3, n_random=8)
    best = result.top["k"][0]
    assert "previous_token" in best.writer_roles and "induction" in best.reader_roles
    assert best.robust_z > 5 and result.role_pairs[0].label == best.label
