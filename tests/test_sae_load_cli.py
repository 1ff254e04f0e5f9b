"""``glasslab sae list|features|feature|clamp`` on a tiny model folder: JSON equal to the Python API,
readable tables, --out files, and one-line errors."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.main
from glasslab.cli.app import app
from glasslab.dictionaries import loading as sae_loading
from glasslab.methods.features.encode import sae_features
from glasslab.methods.features.scan import scan_features
from glasslab.sae import save_sae
from glasslab.store import store_path
from tests.test_sae_splice import random_sae
from tests.tiny import WORDS, save_tiny

PROMPT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("sae-cli") / "tiny-gpt2"
    save_tiny("gpt2", path)
    return path


@pytest.fixture
def setup(folder, tmp_path, monkeypatch):
    """A tiny model folder, an SAE for it in a folder and in the store, and a small corpus."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    monkeypatch.setattr(sae_loading, "SHIPPED_ROOT", tmp_path / "shipped")
    model = gl.load(folder)
    sae = random_sae(model)
    sae_folder = save_sae(sae, tmp_path / "sae")
    save_sae(sae, store_path("saes", model.key, "mine"))
    corpus = tmp_path / "words.txt"
    rng = random.Random(0)
    corpus.write_text(" ".join(rng.choice(WORDS) for _ in range(400)))
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, ["sae", *map(str, args), "--model", str(folder)])

    return invoke, model, sae_folder, corpus


def ok(result):
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    return result


def one_error(result) -> str:
    assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def test_list_and_features(setup, tmp_path):
    invoke, model, sae_folder, _ = setup
    listed = json.loads(ok(invoke("list", "--json")).stdout)
    assert [s["name"] for s in listed["saes"]] == ["store:mine"]
    assert "store:mine" in ok(invoke("list")).stdout
    data = json.loads(ok(invoke("features", PROMPT, "--sae", sae_folder, "--top", "3", "--json")).stdout)
    expected = sae_features(model, sae_loading.load_sae(str(sae_folder), model), PROMPT, top=3).to_dict()
    assert data == json.loads(json.dumps(expected))
    table = ok(invoke("features", PROMPT, "--sae", "store:mine", "--out", tmp_path / "f.html")).stdout
    assert "'cat'" in table and (tmp_path / "f.html").read_text().startswith("<!doctype html>")


def test_feature_dashboard_and_trace(setup):
    invoke, model, sae_folder, corpus = setup
    sae = sae_loading.load_sae(str(sae_folder), model)
    feature = int(scan_features(model, sae, corpus=str(corpus), sequences=6, seq_len=16).fired.argmax())
    args = ("--sae", sae_folder, "--corpus", corpus, "--sequences", 6, "--seq-len", 16, "--k", 3)
    data = json.loads(ok(invoke("feature", feature, *args, "--json")).stdout)
    assert data["kind"] == "sae_feature_dashboard" and data["feature"] == feature and len(data["contexts"]) == 3
    assert "top-activating contexts" in ok(invoke("feature", feature, *args)).stdout
    trace = json.loads(ok(invoke("feature", 4, "--sae", sae_folder, "--text", PROMPT, "--json")).stdout)
    assert trace["kind"] == "sae_feature_trace" and len(trace["activations"]) == len(trace["tokens"])


def test_clamp_and_sweep(setup):
    invoke, _, sae_folder, _ = setup
    base = ("--sae", sae_folder, "--feature", 2, "--feature", 5, "--max-new-tokens", 3)
    data = json.loads(ok(invoke("clamp", PROMPT, *base, "--value", 6, "-p", -1, "--json")).stdout)
    assert data["kind"] == "sae_feature_clamp" and data["positions"] == [-1] and data["amount"] == 6.0
    assert "next-token KL" in ok(invoke("clamp", PROMPT, *base, "--zero")).stdout
    sweep = json.loads(ok(invoke("clamp", PROMPT, *base, "--sweep", "0,1,4", "--sweep-scale", "--json")).stdout)
    assert [row["amount"] for row in sweep["rows"]] == [0.0, 1.0, 4.0] and sweep["rows"][1]["kl"] == 0.0


def test_errors_are_one_line(setup):
    invoke, _, sae_folder, _ = setup
    assert "exactly one" in one_error(invoke("clamp", PROMPT, "--sae", sae_folder, "--feature", 1))
    assert "comma-separated" in one_error(invoke("clamp", PROMPT, "--sae", sae_folder, "-f", 1, "--sweep", "a,b"))
    assert "out of range" in one_error(invoke("feature", 999, "--sae", sae_folder, "--text", PROMPT))
    assert "not an SAE folder" in one_error(invoke("features", PROMPT, "--sae", "nothing-here"))
    assert "HF_HUB_OFFLINE" in one_error(
        invoke("features", PROMPT, "--sae", "gpt2-small-res-jb/blocks.1.hook_resid_pre")
    )
