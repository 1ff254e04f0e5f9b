"""``glasslab transcoders train|estimate|eval|list`` on a tiny model folder and a small JSONL corpus: the set it
builds is listed, measured and drawn by ``glasslab graph -t NAME``; bad options are one line and exit 2."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

import glasslab.cli.main  # noqa: F401  (registers every command)
from glasslab.cli.app import app
from tests.tiny import WORDS, save_tiny

SIZES = ("--d-sae", "16", "--k", "4", "--tokens", "1024", "--harvest-tokens", "2048", "--buffer-tokens", "512")
SIZES += ("--batch-size", "128", "--seq-len", "16")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("transcoders-cli")
    save_tiny("gpt2", root / "tiny")
    rng = random.Random(0)
    lines = [json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(30))}) for _ in range(200)]
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    return root


def cli(setup, *args):
    env = {"GLASSLAB_PROGRESS": "0", "GLASSLAB_HOME": str(setup / "store")}
    return CliRunner().invoke(app, [str(a) for a in (*args, "--model", setup / "tiny")], env=env)


def test_train_then_list_eval_and_graph(setup):
    common = ("--corpus", setup / "corpus.jsonl")
    evaluation = ("--eval-tokens", "200", "--eval-loss-tokens", "30")
    trained = cli(setup, "transcoders", "train", *SIZES, *common, *evaluation, "--name", "mine", "--json")
    assert trained.exit_code == 0, trained.output
    data = json.loads(trained.stdout)
    assert data["kind"] == "transcoder_training" and data["name"] == "mine" and data["steps"] == 8
    assert data["layers"] == [0, 1, 2] and data["d_sae"] == 16 and data["command"].startswith("glasslab")
    assert data["evaluation"]["kind"] == "transcoder_evaluation" and len(data["evaluation"]["layers"]) == 3
    assert "would take about" in trained.stderr  # the estimate, printed before training
    assert json.loads((setup / "store").joinpath(*_set_folder(setup), "training.json").read_text())["steps"] == 8

    listed = cli(setup, "transcoders", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [s["name"] for s in json.loads(listed.stdout)["sets"]] == ["mine"]

    figure = setup / "eval.html"
    evaluated = cli(
        setup, "transcoders", "eval", "mine", *common, "--tokens", "150", "--loss-tokens", "15", "-o", figure
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "FVE" in evaluated.stdout and "loss recovered" in evaluated.stdout
    assert "layer 2" in figure.read_text()  # the per-layer FVE bars

    graph = cli(setup, "graph", "when mary and john went", "-t", "mine", "--max-feature-nodes", "32", "--json")
    assert graph.exit_code == 0, graph.output
    assert json.loads(graph.stdout)["kind"] == "attribution_graph"


def _set_folder(setup) -> tuple[str, ...]:
    """The set's folder under the store, found by its description file (the store names the model's folder)."""
    (found,) = (setup / "store").rglob("mine/transcoders.json")
    return found.parent.relative_to(setup / "store").parts


def test_estimate(setup):
    result = cli(setup, "transcoders", "estimate", *SIZES, "--corpus", setup / "corpus.jsonl", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "transcoder_training_estimate" and data["steps"] == 8 and data["layers"] == 3
    assert data["seconds"] > 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("train", "--architecture", "topk"), "trains"),
        (("train", "--layers", "7"), "layers must be distinct layers"),
        (("estimate", "--layers", "x"), "--layers takes numbers"),
        (("train", "--k", "0"), "--k must be >= 1"),
        (("eval", "nothing-here"), "nothing-here"),
    ],
)
def test_bad_options_are_one_line(setup, args, says):
    result = cli(setup, "transcoders", *args)
    assert result.exit_code == 2, result.output
    assert says in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
