"""The one-pass overview must equal the four views computed separately, each with its own full run."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import glasslab as gl
from glasslab.cli.app import app
from glasslab.methods.lenses.logit_lens import logit_lens
from glasslab.methods.observe.overview import overview

from .tiny import tiny_model
from .tolerance import assert_same_ranking

PROMPT = "when mary and john went to the store john gave a drink to"


def ranking(top) -> tuple[list[int], list[float]]:
    """Token ids and their logits (or probabilities, for the lens), from result objects or their dicts."""
    rows = [t if isinstance(t, dict) else vars(t) for t in top]
    return [t["token_id"] for t in rows], [t.get("logit", t["probability"]) for t in rows]


def assert_same_overview(model: gl.Model, prompt: str, position: int) -> None:
    result = overview(model, prompt, k=5, position=position)
    prediction = gl.predict(model, prompt, k=5, position=position)
    # The overview unembeds its own final-norm cache, predict reads the model's logits: equal up to rounding.
    assert_same_ranking(*ranking(result.prediction.top), *ranking(prediction.top))
    assert result.prediction.entropy_nats == pytest.approx(prediction.entropy_nats, rel=1e-5)

    # The same forward with the same attention route for the patterns: exactly equal.
    assert torch.equal(result.attention.patterns, gl.attention(model, prompt, query_position=position).patterns)

    lens = gl.logit_lens(model, prompt, k=5, positions=[position], candidate_position=position)
    ours, theirs = result.logit_lens.to_dict(), lens.to_dict()
    for mine, reference in zip(ours["layers"], theirs["layers"], strict=True):
        a, b = mine["positions"][0], reference["positions"][0]
        assert_same_ranking(*ranking(a["top"]), *ranking(b["top"]))
        assert a["kl_to_output"] == pytest.approx(b["kl_to_output"], rel=1e-5, abs=1e-5)

    attribution = gl.logit_attribution(
        model, prompt, target=prediction.top[0].token_id, position=position, top_neurons=0
    )
    torch.testing.assert_close(torch.tensor(result.attribution.heads), torch.tensor(attribution.heads))
    assert result.attribution.logit == pytest.approx(attribution.logit, abs=1e-4)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_overview_equals_the_separate_views(family):
    assert_same_overview(tiny_model(family), PROMPT, position=-1)
    assert_same_overview(tiny_model(family), PROMPT, position=4)


def test_overview_renders_and_serialises(tmp_path):
    result = overview(tiny_model("gpt2"), PROMPT)
    assert json.loads(json.dumps(result.to_dict()))["kind"] == "overview"
    assert "What it does not prove" in result._repr_html_()


@pytest.mark.slow
def test_overview_on_the_default_model(default_model):
    assert_same_overview(default_model, "When Mary and John went to the store, John gave a drink to", position=-1)


@pytest.mark.slow
def test_overview_command(default_model, tmp_path):
    import glasslab.cli.main  # noqa: F401  (registers every command, as the console script does)

    page = tmp_path / "overview.html"
    result = CliRunner().invoke(app, ["overview", "The capital of France is", "-k", "5", "--out", str(page)])
    assert result.exit_code == 0, result.output
    assert "attention share" in result.stdout
    assert "What you see" in page.read_text()


def test_asking_for_more_top_tokens_than_the_vocabulary_holds_gives_them_all():
    # The server allows k up to 100; a tiny vocabulary (37 tokens) has fewer (found by the API fuzz test).
    model = tiny_model("gpt2")
    vocab = model.module(model.arch.unembed).out_features
    assert vocab < 100
    result = overview(model, "the cat sat", k=100)
    assert len(result.prediction.top) == vocab
    probabilities = [s.probability for s in result.prediction.top]
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5) and probabilities == sorted(probabilities, reverse=True)
    lens = logit_lens(model, "the cat sat", k=100)
    assert all(len(cell) == vocab for row in lens.top for cell in row)
