"""The ``attribute`` command on a tiny model folder: JSON equal to the API's, readable tables, files, errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.main  # registers every command
from glasslab.cli.app import app
from glasslab.methods.input_attribution import attribute

from .tiny import save_tiny

PROMPT = "when mary and john went to the store john gave a drink to"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("attribute-cli") / "tiny-gemma3"
    save_tiny("gemma3", path)
    return path


@pytest.fixture
def cli(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_one_method_json_equals_the_api(cli, folder):
    result = cli("attribute", PROMPT, "--model", folder, "--target", "mary", "--method", "ig", "--steps", "8", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    expected = attribute(gl.load(folder), PROMPT, "ig", target="mary", steps=8)
    assert data["kind"] == "input_attribution" and data["method"] == "integrated_gradients"
    assert data["scores"] == pytest.approx(expected.scores, abs=1e-6)
    assert data["completeness_error"] == pytest.approx(expected.completeness_error, abs=1e-6)


def test_comparison_table_and_files(cli, folder, tmp_path):
    out = tmp_path / "attribution.html"
    result = cli(
        "attribute", PROMPT, "--model", folder, "--target", "mary", "--method", "ig,occlusion,rollout",
        "--steps", "8", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "faithful first" in result.stdout and "'drink'" in result.stdout and "random order" in result.stdout
    assert "faithful" in out.read_text() and "wrote" in result.stderr
    data_file = tmp_path / "attribution.json"
    result = cli("attribute", PROMPT, "--model", folder, "--compare", "--method", "shap,gxi", "--out", data_file)
    assert result.exit_code == 0, result.stderr
    data = json.loads(data_file.read_text())
    assert data["kind"] == "attribution_comparison" and set(data["ranking"]) == {"shap", "gradient_x_input"}


def test_single_method_table(cli, folder):
    result = cli("attribute", PROMPT, "--model", folder, "--method", "shap", "--budget", "60")
    assert result.exit_code == 0, result.stderr
    assert "SHAP" in result.stdout and "±" in result.stdout and "model evaluations" in result.stdout


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (("--method", "lrp"), "unknown attribution method"),
        (("--baseline", "noise"), "unknown baseline"),
        (("--steps", "0"), "steps must be"),
        (("--kind", "logit_diff"), "versus"),
    ],
)
def test_errors_are_one_line(cli, folder, args, hint):
    result = cli("attribute", PROMPT, "--model", folder, *args)
    assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and hint in lines[-1]
