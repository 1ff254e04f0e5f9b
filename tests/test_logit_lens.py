"""Logit lens: checked against a hand decoding of Hugging Face's own hidden states (every family), the model's
output at the last layer, and TransformerLens's TransformerBridge on the default model."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import glasslab.cli.lens  # noqa: F401  (registers the commands)
from glasslab.cli.app import app
from glasslab.errors import InputError
from glasslab.methods.lenses.logit_lens import EMBED_LAYER, logit_lens
from glasslab.views.html import figure_html

from .tiny import save_tiny, tiny_model
from .tolerance import assert_same_ranking, slack

PROMPT = "when mary and john went to the store john gave a drink to"


def hand_lens(model, prompt: str) -> list[torch.Tensor]:
    """[layers][pos, vocab] probabilities from HF's hidden states through HF's final norm and lm_head.

    HF's last hidden state is already normalised in most families, so the last row is the output's softmax.
    """
    ids = model.to_tokens(prompt)
    with torch.no_grad():
        output = model.hf(input_ids=ids, output_hidden_states=True)
    norm, head = model.hf.get_submodule(model.arch.final_norm), model.hf.get_submodule(model.arch.unembed)
    cap = getattr(model.hf.config, "final_logit_softcapping", None)
    rows = []
    for hidden in output.hidden_states[:-1]:  # embeddings, then blocks 0..n-2
        with torch.no_grad():
            logits = head(norm(hidden[0]))
        if cap:
            logits = torch.tanh(logits / cap) * cap
        rows.append(torch.softmax(logits.float(), -1))
    rows.append(torch.softmax(output.logits[0].float(), -1))
    return rows


def ranking(tokens) -> tuple[list[int], list[float]]:
    return [t.token_id for t in tokens], [t.probability for t in tokens]


def test_logit_lens_equals_hand_decoding_of_hf_hidden_states(family_model):
    result = logit_lens(family_model, PROMPT, k=3, target=" store")
    expected = hand_lens(family_model, PROMPT)
    target_id = family_model.tokenizer(" store", add_special_tokens=False)["input_ids"][0]
    assert result.layers == [EMBED_LAYER, *range(family_model.n_layers)]
    assert len(expected) == len(result.layers)
    for i, probs in enumerate(expected):
        for j, position in enumerate(result.positions):
            top = torch.topk(probs[position], 3)
            mine = result.top[i][j]
            # HF's route rounds differently: the top token is the hand decoding's, or tied with it within rounding
            assert probs[position, mine[0].token_id] >= top.values[0] - slack(probs[position])
            torch.testing.assert_close(torch.tensor([t.probability for t in mine]), top.values, atol=1e-5, rtol=1e-4)
            assert result.target_probability[i][j] == pytest.approx(probs[position, target_id].item(), abs=1e-5)
            rank = int((probs[position] > probs[position, target_id]).sum()) + 1
            assert abs(result.target_rank[i][j] - rank) <= 1  # ties within float rounding may swap
    # the last layer is the model's output: KL 0
    assert max(result.kl_to_output[-1]) <= 1e-6


def test_chosen_positions_match_the_full_grid():
    model = tiny_model("gemma2")  # final soft-capping
    full = logit_lens(model, PROMPT, k=4, target=" drink")
    last = logit_lens(model, PROMPT, k=4, target=" drink", positions=[-1, 2])
    n = len(full.tokens)
    assert last.positions == [2, n - 1]
    for i in range(len(full.layers)):
        # Two positions are decoded in a smaller matmul than the whole grid: equal up to rounding.
        for chosen, whole in ((last.top[i][1], full.top[i][-1]), (last.top[i][0], full.top[i][2])):
            assert_same_ranking(*ranking(chosen), *ranking(whole))
        assert last.target_probability[i][1] == pytest.approx(full.target_probability[i][-1], abs=1e-7)
        assert last.kl_to_output[i][1] == pytest.approx(full.kl_to_output[i][-1], abs=1e-6)


def test_candidates_follow_given_tokens_and_default_to_the_output_top():
    model = tiny_model("llama")
    result = logit_lens(model, PROMPT, k=3, candidates=[" paris", " france"], candidate_position=3)
    assert [c.token for c in result.candidates] == ["paris", "france"]
    assert result.candidate_position == 3
    probs = hand_lens(model, PROMPT)
    for i, row in enumerate(result.candidate_probability):
        assert row == pytest.approx([probs[i][3, c.token_id].item() for c in result.candidates], abs=1e-6)
    default = logit_lens(model, PROMPT, k=3, target=" paris")
    output_top = torch.topk(probs[-1][-1], 3).indices.tolist()
    assert [c.token_id for c in default.candidates][:3] == output_top
    paris = model.tokenizer(" paris", add_special_tokens=False)["input_ids"][0]
    assert paris in [c.token_id for c in default.candidates]


def test_result_renders_and_serialises():
    result = logit_lens(tiny_model("gpt2"), PROMPT, k=2, target=" drink", positions=[-1, -2])
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "logit_lens" and data["lens"] == "logit lens"
    assert [row["hook"] for row in data["layers"][:2]] == ["blocks.0.resid_pre", "blocks.0.resid_post"]
    html = figure_html(result.figure())
    assert "logit lens" in html and "What it does not prove" in html


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"k": 0}, "k must be"),
        ({"positions": [99]}, "out of range"),
        ({"positions": []}, "no positions"),
        ({"target": ""}, "target is empty"),
        ({"candidates": []}, "candidates is empty"),
        ({"candidate_position": -99}, "out of range"),
    ],
)
def test_bad_input_is_one_line(kwargs, words):
    with pytest.raises(InputError, match=words):
        logit_lens(tiny_model("llama"), PROMPT, **kwargs)


def test_cli_logit_lens(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    folder = tmp_path / "tiny-llama"
    save_tiny("llama", folder)
    runner = CliRunner()
    result = runner.invoke(app, ["logit-lens", PROMPT, "-m", str(folder), "--target", " drink", "-p", "-1", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["positions"] == [len(data["tokens"]) - 1] and data["target"]["token"] == "drink"
    table = runner.invoke(
        app, ["logit-lens", PROMPT, "-m", str(folder), "-p", "-1", "-p", "3", "--out", str(tmp_path / "lens.html")]
    )
    assert table.exit_code == 0 and "layer 2" in table.stdout and (tmp_path / "lens.html").exists()
    missing = runner.invoke(app, ["logit-lens", PROMPT, "-m", str(folder), "--tuned"])
    assert missing.exit_code == 2 and "glasslab tuned-lens train" in missing.stderr


@pytest.mark.slow
def test_default_model_last_layer_is_the_output(default_model):
    prompt = "The Eiffel Tower is in the city of"
    result = logit_lens(default_model, prompt, k=5, target=" Paris", positions=[-1])
    logits = default_model.run(prompt).logits[0, -1].float()
    probs = torch.softmax(logits, -1)
    top = torch.topk(probs, 5)
    assert_same_ranking(*ranking(result.top[-1][0]), top.indices.tolist(), top.values.tolist())
    assert [t.probability for t in result.top[-1][0]] == pytest.approx(top.values.tolist(), abs=1e-6)
    assert result.kl_to_output[-1][0] <= 1e-6
    # the lens sharpens towards the answer: its probability at the output far exceeds the embeddings'
    assert result.target_probability[-1][0] > 10 * result.target_probability[0][0]


@pytest.mark.slow
def test_logit_lens_equals_transformer_bridge(default_model):
    """Bridge's cached resid_post, decoded through its own copy's final norm and lm_head: top-1 tokens equal,
    probabilities within 1e-4 (the caches agree to ~1e-5 relative, see test_peer_transformer_lens)."""
    bridge_module = pytest.importorskip("transformer_lens.model_bridge")
    from transformers import AutoModelForCausalLM

    own_copy = AutoModelForCausalLM.from_pretrained(default_model.stored_at, dtype=torch.float32)
    bridge = bridge_module.TransformerBridge.boot_transformers(
        str(default_model.stored_at), hf_model=own_copy, tokenizer=default_model.tokenizer, device="cpu"
    )
    prompt = "When Mary and John went to the store, John gave a drink to"
    tokens = default_model.to_tokens(prompt)
    layers = [0, 5, 11, 16, 17]
    with torch.inference_mode():
        _, cache = bridge.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_resid_post"))
        theirs = {
            layer: torch.softmax(own_copy.lm_head(own_copy.model.norm(cache[f"blocks.{layer}.hook_resid_post"][0])), -1)
            for layer in layers
        }
    result = logit_lens(default_model, prompt, k=1)
    for layer in layers:
        row = result.layers.index(layer)
        for j, position in enumerate(result.positions):
            mine = result.top[row][j][0]
            # top-1 equal, or tied with the bridge's within the probabilities' agreement (another route)
            top = theirs[layer][position]
            assert top[mine.token_id].item() >= top.max().item() - 1e-4, (layer, position)
            assert mine.probability == pytest.approx(theirs[layer][position].max().item(), abs=1e-4)
