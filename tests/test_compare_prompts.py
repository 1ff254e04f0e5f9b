"""Two prompts, one model: alignment rules against brute force, and every method's differences against
separate runs of the model and of the underlying methods."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from glasslab.errors import InputError
from glasslab.methods.attribute.dla import logit_attribution
from glasslab.methods.compare.alignment import Alignment, align, align_ids
from glasslab.methods.compare.prompts import attention_distance, compare_prompts
from glasslab.methods.metrics import kl_divergence
from glasslab.views.html import figure_html

from .tiny import tiny_model

A = "when mary and john went to the store john gave a drink to"
B = "when mary and john went to the park mary gave a drink to"  # same length, two words changed
C = "when john went to the store john gave a drink to"  # two tokens shorter: "mary and" is missing


@pytest.fixture(scope="module")
def model():
    return tiny_model("gemma3")


# ---------------------------------------------------------------------------------------------------
# Alignment


def _brute_lcs(a: list[int], b: list[int]) -> int:
    best = 0
    for size in range(min(len(a), len(b)), 0, -1):
        subs = {tuple(a[i] for i in idx) for idx in itertools.combinations(range(len(a)), size)}
        if any(tuple(b[j] for j in idx) in subs for idx in itertools.combinations(range(len(b)), size)):
            return size
    return best


def _valid(pairs: list[tuple[int, int]], a: list[int] | None = None, b: list[int] | None = None) -> None:
    for (i0, j0), (i1, j1) in itertools.pairwise(pairs):
        assert i1 > i0 and j1 > j0
    if a is not None:
        assert all(a[i] == b[j] for i, j in pairs)


def test_lcs_is_a_longest_common_subsequence():
    rng = random.Random(0)
    for _ in range(40):
        a = [rng.randrange(3) for _ in range(rng.randrange(1, 7))]
        b = [rng.randrange(3) for _ in range(rng.randrange(1, 7))]
        rule, pairs = align_ids(a, b, "lcs")
        assert rule == "lcs"
        _valid(pairs, a, b)
        assert len(pairs) == _brute_lcs(a, b)


def test_simple_rules():
    a, b = [1, 5, 6, 7], [1, 9, 5, 6, 7, 8]
    assert align_ids(a, b, "left")[1] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert align_ids(a, b, "right")[1] == [(0, 2), (1, 3), (2, 4), (3, 5)]
    assert align_ids(a, a, "auto") == ("position", [(0, 0), (1, 1), (2, 2), (3, 3)])
    with pytest.raises(InputError, match="equal lengths"):
        align_ids(a, b, "position")
    with pytest.raises(InputError, match="unknown alignment"):
        align_ids(a, b, "diagonal")


def test_prefix_suffix_pairs_shared_ends_and_equal_middles():
    # an inserted token: prefix and suffix pair up, the insertion stays unmatched
    rule, pairs = align_ids([1, 4, 5, 6], [1, 9, 4, 5, 6], "auto")
    assert rule == "prefix_suffix" and pairs == [(0, 0), (1, 2), (2, 3), (3, 4)]
    # a substitution of the same length pairs position by position
    assert align_ids([1, 4, 5, 6], [1, 7, 8, 6], "prefix_suffix")[1] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    # the prefix is taken first and the suffix never overlaps it
    assert align_ids([1, 2, 1], [1, 2, 1, 2, 1], "prefix_suffix")[1] == [(0, 0), (1, 1), (2, 2)]


def test_alignment_of_prompts_names_tokens(model):
    alignment = align(model, A, C)
    assert alignment.rule == "prefix_suffix"
    assert alignment.tokens_a[0] == "<bos>" and alignment.pairs[0] == (0, 0)
    assert alignment.pairs[-1] == (len(alignment.tokens_a) - 1, len(alignment.tokens_b) - 1)
    data = alignment.to_dict()
    assert set(data["unmatched_a"]).isdisjoint(i for i, _ in alignment.pairs)


# ---------------------------------------------------------------------------------------------------
# Methods


def test_identical_prompts_differ_nowhere(model):
    for method in ("predict", "attention", "neurons"):
        result = compare_prompts(model, A, A, method=method)
        for grid in result.grids:
            assert max(abs(v) for row in grid.diff for v in row) < 1e-6, (method, grid.title)
        assert all(abs(c.diff) < 1e-6 for c in result.changes)


def test_predict_matches_separate_runs(model):
    result = compare_prompts(model, A, C, method="predict", target="mary", k=5)
    alignment = result.alignment
    log_a = torch.log_softmax(model.run(A).logits[0].float(), -1)
    log_c = torch.log_softmax(model.run(C).logits[0].float(), -1)
    expected = [float(kl_divergence(log_a[i][None], log_c[j][None])[0]) for i, j in alignment.pairs]
    torch.testing.assert_close(torch.tensor(result.grids[0].diff[0]), torch.tensor(expected), atol=1e-5, rtol=1e-5)
    assert result.positions == (len(alignment.tokens_a) - 1, len(alignment.tokens_b) - 1)
    for change in result.changes:
        token = int(change.label.rsplit("#", 1)[1])
        assert change.a == pytest.approx(float(log_a[-1, token].exp()), abs=1e-6)
        assert change.b == pytest.approx(float(log_c[-1, token].exp()), abs=1e-6)
    data = result.to_dict()
    assert data["kind"] == "compare_prompts" and data["details"]["a"]["kind"] == "prediction"


def test_attention_distance_by_hand(model):
    result = compare_prompts(model, A, B, method="attention")
    pa = model.run(A, cache="blocks.*.attn.pattern").cache
    pb = model.run(B, cache="blocks.*.attn.pattern").cache
    for layer in range(model.n_layers):
        a, b = pa[f"blocks.{layer}.attn.pattern"][0], pb[f"blocks.{layer}.attn.pattern"][0]
        expected = 0.5 * (a[:, 1:] - b[:, 1:]).abs().sum(-1).mean(-1)
        torch.testing.assert_close(torch.tensor(result.grids[0].diff[layer]), expected.float(), atol=1e-5, rtol=1e-5)


def test_attention_distance_counts_unpaired_keys_in_full():
    # A: 3 tokens, B: 4 tokens with an inserted token at 1; pairs (0,0) (1,2) (2,3)
    alignment = Alignment("prefix_suffix", ["a", "b", "c"], ["a", "x", "b", "c"], [(0, 0), (1, 2), (2, 3)])
    pa = torch.zeros(1, 1, 3, 3)
    pb = torch.zeros(1, 1, 4, 4)
    pa[0, 0, 1, :2] = torch.tensor([0.5, 0.5])
    pa[0, 0, 2] = torch.tensor([0.2, 0.3, 0.5])
    pb[0, 0, 2, :3] = torch.tensor([0.5, 0.25, 0.25])  # 0.25 on the unpaired key 1
    pb[0, 0, 3] = torch.tensor([0.2, 0.0, 0.3, 0.5])  # identical to A's row once keys are mapped
    # query pair (1, 2): paired keys |0.5-0.5| + |0.5-0.25| = 0.25, unpaired 0 + 0.25 -> TV 0.25
    distance = attention_distance(pa, pb, alignment)
    assert float(distance[0, 0]) == pytest.approx((0.25 + 0.0) / 2)


def test_logit_lens_last_layer_is_the_output_kl(model):
    result = compare_prompts(model, A, C, method="logit_lens", target="mary")
    alignment = result.alignment
    log_a = torch.log_softmax(model.run(A).logits[0].float(), -1)
    log_c = torch.log_softmax(model.run(C).logits[0].float(), -1)
    ia = [i for i, _ in alignment.pairs]
    jb = [j for _, j in alignment.pairs]
    expected = kl_divergence(log_a[ia], log_c[jb])
    torch.testing.assert_close(torch.tensor(result.grids[0].diff[-1]), expected, atol=1e-4, rtol=1e-4)
    mary = model.token_id("mary")
    last = result.grids[1]
    torch.testing.assert_close(torch.tensor(last.a[-1]), log_a[ia, mary].exp(), atol=1e-5, rtol=1e-5)
    assert len(result.grids[0].rows) == model.n_layers + 1


def test_dla_differences_are_the_two_attributions(model):
    result = compare_prompts(model, A, C, method="dla", target="mary", versus="john")
    da = logit_attribution(model, A, target="mary", versus="john", top_neurons=0)
    dc = logit_attribution(model, C, target="mary", versus="john", top_neurons=0)
    blocks, heads = result.grids
    for layer in range(model.n_layers):
        assert blocks.diff[layer][0] == pytest.approx(dc.attn[layer] - da.attn[layer], abs=1e-5)
        assert blocks.diff[layer][1] == pytest.approx(dc.mlp[layer] - da.mlp[layer], abs=1e-5)
        for h in range(model.n_heads):
            assert heads.diff[layer][h] == pytest.approx(dc.heads[layer][h] - da.heads[layer][h], abs=1e-5)
    # the shares' changes add up to the change of the decomposed logit difference
    total = sum(sum(row) for row in blocks.diff) + (dc.embed - da.embed)
    assert total == pytest.approx(dc.normalised_logit - da.normalised_logit, abs=1e-3)


def test_neurons_match_cached_activations(model):
    result = compare_prompts(model, A, C, method="neurons", position=-2, k=3)
    run_a = model.run(A, cache="blocks.*.mlp.post")
    run_c = model.run(C, cache="blocks.*.mlp.post")
    diff = torch.stack(
        [
            run_c.cache[f"blocks.{lay}.mlp.post"][0, -2] - run_a.cache[f"blocks.{lay}.mlp.post"][0, -2]
            for lay in range(3)
        ]
    )
    torch.testing.assert_close(torch.tensor(result.grids[0].diff)[:, 0], diff.norm(dim=-1), atol=1e-5, rtol=1e-5)
    best = diff.abs().flatten().topk(3).indices
    assert [c.label for c in result.changes] == [f"L{int(i) // model.d_mlp} N{int(i) % model.d_mlp}" for i in best]


def test_positions_map_through_the_alignment(model):
    result = compare_prompts(model, A, C, method="neurons", position=5)
    assert result.positions == (5, result.alignment.partner_of_a(5))
    unmatched = result.alignment.unmatched_a
    if unmatched:
        with pytest.raises(InputError, match="no partner"):
            compare_prompts(model, A, C, method="neurons", position=unmatched[0])


def test_bad_input_is_one_line(model):
    with pytest.raises(InputError, match="unknown method"):
        compare_prompts(model, A, B, method="vibes")
    with pytest.raises(InputError, match="target"):
        compare_prompts(model, A, B, method="dla")
    with pytest.raises(InputError, match="empty"):
        compare_prompts(model, "", B)
    with pytest.raises(InputError, match="out of range"):
        compare_prompts(model, A, B, method="neurons", position=99)
    with pytest.raises(InputError, match="SAE"):
        compare_prompts(model, A, B, method="sae")


def test_figure_renders(model):
    html = figure_html(compare_prompts(model, A, C, method="attention").figure())
    assert "TV distance" in html or "total-variation" in html
