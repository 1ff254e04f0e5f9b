"""``glasslab compare ...`` commands on tiny saved models: JSON equals the Python API, --out, one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import glasslab.cli.main  # noqa: F401  (registers every command)
from glasslab.cli.app import app
from glasslab.methods.compare.prompts import compare_prompts

from .tiny import save_tiny, tiny_model

A = "when mary and john went to the store john gave a drink to"
B = "when john went to the store john gave a drink to"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for family in ("gemma3", "gpt2"):
        save_tiny(family, root / family)
    return root


@pytest.fixture
def cli(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_compare_prompts_json_equals_the_api(cli, folders, tmp_path):
    result = cli(
        "compare",
        "prompts",
        A,
        B,
        "--method",
        "dla",
        "--target",
        "mary",
        "--versus",
        "john",
        "--json",
        "--out",
        tmp_path / "diff.html",
        "--model",
        folders / "gemma3",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = compare_prompts(tiny_model("gemma3"), A, B, method="dla", target="mary", versus="john").to_dict()
    assert data["kind"] == "compare_prompts" and data["alignment"] == expected["alignment"]
    assert [c["label"] for c in data["changes"]] == [c["label"] for c in expected["changes"]]
    assert data["changes"][0]["diff"] == pytest.approx(expected["changes"][0]["diff"], abs=1e-5)
    assert (tmp_path / "diff.html").exists()
    table = cli("compare", "prompts", A, B, "--model", folders / "gemma3")
    assert table.exit_code == 0 and "largest changes" in table.stdout


def test_compare_models_and_text(cli, folders, tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text((A + " " + B + " ") * 10)
    result = cli(
        "compare",
        "models",
        folders / "gpt2",
        folders / "gemma3",
        "--corpus",
        corpus,
        "--sequences",
        "2",
        "--seq-len",
        "12",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "compare_models" and data["sequences"] == 2 and len(data["cka"]) == 3
    text = cli(
        "compare",
        "models",
        folders / "gpt2",
        folders / "gemma3",
        "--text",
        "--prompt",
        "the cat",
        "--max-new-tokens",
        "2",
    )
    assert text.exit_code == 0, text.output


def test_compare_side_effects_and_composition(cli, folders):
    result = cli(
        "compare",
        "side-effects",
        A,
        "--target",
        "mary",
        "--ablate-head",
        "1.2",
        "--corpus",
        "none",
        "--neutral",
        "the cat sat",
        "--json",
        "--model",
        folders / "gemma3",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "side_effects" and data["intervention"] == ["Ablate blocks.1.attn.z (head=2)"]
    composition = cli("compare", "composition", "--n-random", "4", "--top", "3", "--model", folders / "gpt2")
    assert composition.exit_code == 0 and "K-composition" in composition.stdout


def test_cli_errors_are_one_line(cli, folders):
    for args, message in (
        (("compare", "prompts", A, B, "--method", "vibes"), "--method must be one of"),
        (("compare", "side-effects", A, "--target", "mary"), "nothing to apply"),
        (("compare", "side-effects", A, "--ablate-head", "x"), "LAYER.HEAD"),
        (("compare", "composition", "--top", "0"), "top"),
    ):
        result = cli(*args, "--model", folders / "gemma3")
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output


def test_compare_features_with_saved_saes(cli, folders, tmp_path):
    from glasslab.sae import save_sae

    from .test_compare_features import random_sae

    save_sae(random_sae("blocks.0.resid_post", 0), tmp_path / "up")
    save_sae(random_sae("blocks.2.resid_post", 1), tmp_path / "down")
    result = cli(
        "compare",
        "features",
        A,
        "--upstream",
        tmp_path / "up",
        "--downstream",
        tmp_path / "down",
        "--max-edges",
        "4",
        "--verify",
        "2",
        "--json",
        "--model",
        folders / "gemma3",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "feature_influence" and len(data["edges"]) == 4
    assert [e["patched"] is not None for e in data["edges"]] == [True, True, False, False]
    swapped = cli(
        "compare",
        "features",
        A,
        "--upstream",
        tmp_path / "down",
        "--downstream",
        tmp_path / "up",
        "--model",
        folders / "gemma3",
    )
    assert swapped.exit_code == 2 and "does not come before" in swapped.stderr
    sae_diff = cli(
        "compare", "prompts", A, B, "--method", "sae", "--sae", tmp_path / "up", "--json", "--model", folders / "gemma3"
    )
    assert sae_diff.exit_code == 0, sae_diff.output
