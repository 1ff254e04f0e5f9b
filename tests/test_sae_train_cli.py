"""``glasslab sae train`` and ``glasslab sae eval`` on a tiny model folder and a small JSONL corpus."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

import glasslab.cli.main  # noqa: F401  (registers every command)
from glasslab.cli.app import app
from tests.tiny import WORDS, save_tiny


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sae-cli")
    save_tiny("llama", root / "tiny")
    rng = random.Random(0)
    lines = [json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(30))}) for _ in range(200)]
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    return root


def cli(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env={"GLASSLAB_PROGRESS": "0", **(env or {})})


def test_train_then_eval(setup, tmp_path):
    env = {"GLASSLAB_HOME": str(tmp_path / "store")}
    common = ("--model", setup / "tiny", "--corpus", setup / "corpus.jsonl")
    train = ("sae", "train", "--hook", "blocks.1.resid_post", "--expansion", "2", "--k", "4", "--tokens", "2048")
    train += ("--dead-after", "512")
    sizes = ("--batch-size", "256", "--seq-len", "16", "--eval-tokens", "200", "--eval-loss-tokens", "30")
    result = cli(*train, *sizes, *common, "--save-to", tmp_path / "sae", "--json", env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "sae_training" and data["steps"] == 8 and data["d_sae"] == 64
    assert data["command"].startswith("glasslab") and data["evaluation"]["kind"] == "sae_evaluation"
    assert data["config"]["dead_after_tokens"] == 512
    assert (tmp_path / "sae" / "training.json").is_file()

    sizes = ("--tokens", "150", "--loss-tokens", "15")
    evaluated = cli("sae", "eval", "--sae", tmp_path / "sae", *common, *sizes, env=env)
    assert evaluated.exit_code == 0, evaluated.output
    assert "variance explained" in evaluated.stdout and "loss recovered" in evaluated.stdout


def test_bad_hook_is_one_line(setup, tmp_path):
    result = cli(
        "sae", "train", "--hook", "blocks.7.resid_post", "--model", setup / "tiny",
        env={"GLASSLAB_HOME": str(tmp_path / "store")},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "layer 7" in result.stderr and "Traceback" not in result.output


def test_estimate_by_layer(setup, tmp_path):
    env = {"GLASSLAB_HOME": str(tmp_path / "store")}
    common = ("--model", setup / "tiny", "--corpus", setup / "corpus.jsonl")
    sizes = ("--expansion", "2", "--k", "4", "--tokens", "2048", "--batch-size", "256", "--seq-len", "16")
    result = cli("sae", "estimate", "--layer", "1", *sizes, "--eval-tokens", "0", *common, "--json", env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "sae_training_estimate" and data["hook"] == "blocks.1.resid_post" and data["steps"] == 8
    both = cli("sae", "estimate", "--layer", "1", "--hook", "blocks.1.resid_post", *common, env=env)
    assert both.exit_code == 2 and "not both" in both.stderr
