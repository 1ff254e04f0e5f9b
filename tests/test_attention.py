"""Attention patterns, summaries and reads, checked against hand computations, the config's windows and a peer.

Second routes: patterns recomputed by hand from the cached queries and keys (grouped-query models
repeat each key head for its query heads), summaries and top keys recomputed with plain Python from
the patterns, sliding windows read from the model's config, and TransformerLens's TransformerBridge
``hook_pattern`` on the real default model.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.observe  # registers the commands
from glasslab.cli.app import app
from glasslab.methods.observe.attention import attention, sliding_windows

from .tiny import save_tiny, tiny_model

PROMPT = "the cat sat on the mat and the dog ran to the park when mary and john went to the store"


def test_patterns_equal_softmax_of_cached_queries_and_keys_with_gqa():
    """Llama with 4 query heads sharing 2 key/value heads: every query head gets its own pattern, and it is
    softmax(q k^T / sqrt(d_head)) under the causal mask, with key head h // 2 serving query head h."""
    model = tiny_model("llama")
    assert (model.n_heads, model.n_kv_heads) == (4, 2)
    result = attention(model, PROMPT)
    n = len(result.tokens)
    assert result.patterns.shape == (model.n_layers, model.n_heads, n, n)
    run = model.run(PROMPT, cache=["blocks.*.attn.q", "blocks.*.attn.k"])
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    for layer in range(model.n_layers):
        q = run.cache[f"blocks.{layer}.attn.q"][0]  # [pos, head, d_head]
        k = run.cache[f"blocks.{layer}.attn.k"][0]  # [pos, kv_head, d_head]
        for head in range(model.n_heads):
            scores = q[:, head] @ k[:, head // 2].T / math.sqrt(model.d_head)
            expected = scores.masked_fill(~causal, float("-inf")).softmax(-1)
            torch.testing.assert_close(result.pattern(layer, head), expected, rtol=1e-5, atol=1e-6)
    # Heads that share keys still differ (their queries differ).
    assert not torch.allclose(result.pattern(0, 0), result.pattern(0, 1))


@pytest.mark.parametrize("family", ["gemma3", "mistral", "gemma2"])
def test_sliding_window_layers_give_zero_weight_outside_the_window(family):
    """Window w (from the config): query q sees keys q-w+1..q only; full layers see every earlier key."""
    model = tiny_model(family)
    result = attention(model, PROMPT)
    windows = sliding_windows(model)
    types = getattr(model.config, "layer_types", None) or ["sliding_attention"] * model.n_layers
    assert windows == [model.config.sliding_window if t == "sliding_attention" else None for t in types]
    n = len(result.tokens)
    distance = torch.arange(n)[:, None] - torch.arange(n)[None, :]
    for layer, window in enumerate(windows):
        pattern = result.patterns[layer]
        if window is None:
            assert (pattern[:, distance >= 4] > 0).all(), "a full-attention layer must see far keys"
            continue
        assert (pattern[:, distance >= window] == 0).all()
        assert (pattern[:, (distance >= 0) & (distance < window)] > 0).all()
        torch.testing.assert_close(pattern.sum(-1), torch.ones(model.n_heads, n))
        # The top keys listed for the last query skip everything outside the window.
        assert all(r.position > n - 1 - window for reads in result.reads[layer] for r in reads)


def test_summaries_and_reads_equal_plain_python():
    """Each summary is a mean over queries 1..n-1 (see HeadSummary); reads are the query row's heaviest keys."""
    model = tiny_model("gpt2")
    result = attention(model, PROMPT, query_position=7, top_k=3)
    n = len(result.tokens)
    for layer, head in [(0, 0), (1, 3), (2, 2)]:
        rows = result.pattern(layer, head).tolist()
        row_max = sum(max(rows[q][: q + 1]) for q in range(1, n)) / (n - 1)
        entropy = sum(-sum(a * math.log(a) for a in rows[q][: q + 1] if a > 0) for q in range(1, n)) / (n - 1)
        distance = sum(sum(rows[q][k] * (q - k) for k in range(q + 1)) for q in range(1, n)) / (n - 1)
        first = sum(rows[q][0] for q in range(1, n)) / (n - 1)
        s = result.summary(layer, head)
        assert (s.layer, s.head) == (layer, head)
        for got, want in ((s.row_max, row_max), (s.entropy, entropy), (s.distance, distance), (s.first_token, first)):
            assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
        best = sorted(range(8), key=lambda k: -rows[7][k])[:3]
        assert [r.position for r in result.reads[layer][head]] == best
        assert [r.token for r in result.reads[layer][head]] == [result.tokens[k] for k in best]


def test_selection_defaults_and_errors():
    model = tiny_model("qwen2")
    chosen = attention(model, "the cat sat", layer=1, head=2, query_position=-2)
    assert (chosen.layer, chosen.head, chosen.query_position) == (1, 2, 2)
    default = attention(model, "the cat sat")
    assert default.query_position == len(default.tokens) - 1
    summary = default.summary(default.layer, default.head)
    others = [s for s in default.summaries if s.first_token < 0.5]
    assert summary.row_max == max(s.row_max for s in others)
    for kwargs, message in (
        ({"layer": 3}, "layer must be in 0..2"),
        ({"layer": 0, "head": 4}, "head must be in 0..3"),
        ({"head": 1}, "needs its layer"),
        ({"query_position": 4}, "out of range"),
        ({"top_k": 0}, "top_k"),
    ):
        with pytest.raises(gl.InputError, match=message):
            attention(model, "the cat sat", **kwargs)


def test_result_json_and_figure():
    model = tiny_model("gemma3")
    result = attention(model, "the cat sat on the mat", layer=0, head=0)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "attention" and data["model"] == model.name
    assert data["n_heads"] == model.n_heads and len(data["summaries"]) == model.n_layers * model.n_heads
    assert torch.tensor(data["pattern"]).shape == (7, 7)
    html = result._repr_html_()
    assert "mat" in html and "What it does not prove" in html


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("attention") / "tiny-llama"
    save_tiny("llama", path)
    return path


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_cli_json_table_out_and_errors(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    reference = attention(gl.load(folder), "the cat sat on the mat", layer=1, head=3, query_position=4)
    done = invoke("attention", "the cat sat on the mat", "--layer", "1", "--head", "3", "--query-position", "4",
                  "--model", str(folder), "--json")  # fmt: skip
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert (data["layer"], data["head"], data["query_token"]) == (1, 3, "on")
    torch.testing.assert_close(torch.tensor(data["pattern"]), reference.pattern(1, 3))
    table = invoke("attention", "the cat sat on the mat", "--model", str(folder), "--out", str(tmp_path / "a.html"))
    assert table.exit_code == 0 and "what token 6 'mat' reads" in table.stdout
    assert "the cat" in (tmp_path / "a.html").read_text() or "mat" in (tmp_path / "a.html").read_text()
    bad = CliRunner().invoke(app, ["attention", "the cat", "--layer", "9", "--model", str(folder)])
    assert bad.exit_code == 2 and "layer must be in 0..2" in bad.output and "Traceback" not in bad.output


# -- the real default model -------------------------------------------------------------------------------


@pytest.mark.slow
def test_default_model_sliding_window_of_512(default_model):
    """Gemma 3 270M: sliding layers (window 512) give exactly zero weight 512 or more tokens back; its full
    layers (every sixth) do attend that far (at least to the first token)."""
    words = ["alpha", "beta", "gamma", "delta", "river", "stone", "cloud", "market", "garden", "window"]
    text = " ".join(words[(i * 7) % len(words)] + str(i % 10) for i in range(330))
    result = attention(default_model, text)
    n = len(result.tokens)
    assert n > 600
    windows = sliding_windows(default_model)
    assert windows.count(512) == 15 and windows[5] is None
    distance = torch.arange(n)[:, None] - torch.arange(n)[None, :]
    far = distance >= 512
    for layer in (0, 4, 6):
        assert (result.patterns[layer][:, far] == 0).all()
        assert (result.patterns[layer][:, (distance == 511)] > 0).all()
    for layer in (5, 11, 17):
        assert (result.patterns[layer][:, 600:, 0] > 0).all()
    assert result.patterns.shape[1] == default_model.n_heads == 4 and default_model.n_kv_heads == 1


@pytest.mark.slow
def test_patterns_equal_transformer_bridge(default_model):
    """Peer: TransformerBridge's ``blocks.L.attn.hook_pattern`` on its own copy of the same weights.

    Tolerance: rtol 1e-4, atol 1e-6 (weights lie in [0, 1]; both are float32 eager softmaxes of the
    same scores, so only summation order can differ)."""
    bridge_module = pytest.importorskip("transformer_lens.model_bridge")
    from transformers import AutoModelForCausalLM

    own_copy = AutoModelForCausalLM.from_pretrained(default_model.stored_at, dtype=torch.float32)
    bridge = bridge_module.TransformerBridge.boot_transformers(
        str(default_model.stored_at), hf_model=own_copy, tokenizer=default_model.tokenizer, device="cpu"
    )
    prompt = "When Mary and John went to the store, John gave a drink to Mary. The cat sat on the mat."
    result = attention(default_model, prompt)
    with torch.inference_mode():
        _, cache = bridge.run_with_cache(default_model.to_tokens(prompt))
    for layer in range(default_model.n_layers):
        theirs = cache[f"blocks.{layer}.attn.hook_pattern"][0]
        torch.testing.assert_close(result.patterns[layer], theirs.float(), rtol=1e-4, atol=1e-6, msg=f"layer {layer}")
