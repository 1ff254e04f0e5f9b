"""Residual-stream norms against the cached activations, BOS as the massive-activation outlier of the real
model, and the four component commands through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.components  # registers its commands
from glasslab.cli.app import app
from glasslab.methods.attribute.dla import logit_attribution
from glasslab.methods.observe.resid_stats import KINDS, resid_norms

from .tiny import save_tiny

PROMPT = "the cat sat on the mat"


def test_norms_equal_the_cached_activations(family_model):
    model = family_model
    result = resid_norms(model, PROMPT, top=3)
    run = model.run(
        PROMPT, cache=["blocks.*.resid_pre", "blocks.*.resid_post", "blocks.*.attn_out", "blocks.*.mlp_out"]
    )
    for kind in KINDS:
        expected = torch.stack(
            [torch.linalg.norm(run.cache[f"blocks.{layer}.{kind}"][0], dim=-1) for layer in range(model.n_layers)]
        )
        torch.testing.assert_close(torch.tensor(result.norms[kind]), expected.float(), rtol=1e-5, atol=1e-6)
    assert len(result.outliers) == 3
    ratios = [o.ratio for o in result.outliers]
    assert ratios == sorted(ratios, reverse=True)
    for o in result.outliers:
        grid = torch.tensor(result.norms[o.kind])
        assert o.norm == pytest.approx(float(grid[o.layer, o.position]))
        assert o.ratio == pytest.approx(float(grid[o.layer, o.position] / grid[o.layer].median()))
        assert o.largest_in == [layer for layer in range(model.n_layers) if int(grid[layer].argmax()) == o.position]


@pytest.mark.slow
def test_bos_carries_the_massive_activation_in_the_default_model(default_model):
    """Gemma 3 270M: BOS has the largest resid_post norm at every layer (measured: 30x the median after
    block 0, 5-15x in the middle, 2x at the last block)."""
    result = resid_norms(default_model, "When Mary and John went to the store, John gave a drink to")
    post = torch.tensor(result.norms["resid_post"])
    assert (post.argmax(dim=1) == 0).all()
    ratio = post[:, 0] / post[:, 1:].median(dim=1).values
    assert (ratio > 1.5).all() and ratio.max() > 10
    top = result.outliers[0]
    assert top.position == 0 and top.token == "<bos>"


# -- CLI ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("components") / "tiny-gpt2"
    save_tiny("gpt2", path)
    return path


@pytest.fixture
def cli(monkeypatch, tmp_path, folder):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [*map(str, args), "--model", str(folder)])


def ok_json(result) -> dict:
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    return json.loads(result.stdout)


def test_cli_dla_json_matches_the_api(cli, folder):
    data = ok_json(cli("dla", "the cat sat on the", "--target", " mat", "--versus", " dog", "--json"))
    assert data["kind"] == "logit_attribution"
    expected = logit_attribution(gl.load(folder), "the cat sat on the", target=" mat", versus=" dog")
    torch.testing.assert_close(torch.tensor(data["heads"]), torch.tensor(expected.heads), rtol=0, atol=1e-6)
    assert abs(data["error"]) < 1e-4


def test_cli_tables_and_html(cli, tmp_path):
    result = cli("dla", "the cat sat on the", "--target", " mat", "--out", tmp_path / "dla.html")
    assert result.exit_code == 0, result.stderr
    assert "direct shares" in result.stdout and (tmp_path / "dla.html").read_text().startswith("<!doctype html>")
    result = cli("neurons", "the cat sat", "--target", " mat", "--top", "3")
    assert result.exit_code == 0 and "most active neurons" in result.stdout
    result = cli("resid-norms", "the cat sat", "--out", tmp_path / "norms.json")
    assert result.exit_code == 0 and json.loads((tmp_path / "norms.json").read_text())["kind"] == "resid_norms"
    assert "largest norms" in result.stdout


def test_cli_neuron_profile(cli, tmp_path):
    corpus = tmp_path / "words.txt"
    corpus.write_text("the cat sat on the mat and the dog ran to the park " * 8)
    data = ok_json(
        cli("neuron", "1", "2", "--corpus", corpus, "--sequences", "4", "--seq-len", "10", "-k", "2", "--json")
    )
    assert data["kind"] == "neuron_profile" and len(data["contexts"]) == 2
    result = cli("neuron", "1", "2", "--corpus", corpus, "--sequences", "4", "--seq-len", "10", "-k", "2")
    assert result.exit_code == 0 and "[[" in result.stdout


def test_cli_errors_are_one_line(cli):
    result = cli("dla", "the cat", "--target", " mat", "--position", "7")
    assert result.exit_code == 2 and "position 7 is out of range" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli("neuron", "9", "0")
    assert result.exit_code == 2 and "layer 9 is out of range" in result.stderr
