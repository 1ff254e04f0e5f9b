"""``glasslab trace`` and ``glasslab edit`` on a tiny model folder: JSON matching the API, tables, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.main  # registers every command
from glasslab.cli.app import app
from glasslab.methods.editing import causal_trace, load_edit

from .tiny import save_tiny

PROMPT, SUBJECT = "when mary and john went to the", "mary and john"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli-edit") / "tiny-llama"
    save_tiny("llama", path)
    return path


@pytest.fixture
def cli(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("GLASSLAB_PROGRESS", "0")
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_trace_json_matches_the_api(cli, folder, tmp_path):
    result = cli(
        "trace", PROMPT, "--subject", SUBJECT, "--samples", "2", "--kinds", "resid,mlp", "--model", folder, "--json"
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    expected = causal_trace(gl.load(folder), PROMPT, SUBJECT, samples=2, kinds=["resid", "mlp"])
    assert data["kind"] == "causal_trace" and set(data["scores"]) == {"resid", "mlp"}
    assert torch.allclose(torch.tensor(data["scores"]["mlp"]), torch.tensor(expected.scores["mlp"]), atol=1e-6)
    table = cli("trace", PROMPT, "--subject", SUBJECT, "--samples", "1", "--kinds", "mlp", "--model", folder)
    assert table.exit_code == 0 and "restoring mlp" in table.stdout
    html = tmp_path / "trace.html"
    assert cli("trace", PROMPT, "--subject", SUBJECT, "--samples", "1", "--model", folder, "--out", html).exit_code == 0
    assert "causal trace" in html.read_text()


def test_edit_json_table_and_save(cli, folder):
    args = ["edit", "--subject", "the cat", "--prompt", "the cat sat on the", "--target", " park", "--layer", "1"]
    args += ["--target-true", " mat", "--stats-tokens", "300", "--steps", "2", "--no-fluency", "--model", folder]
    result = cli(*args, "--json", "--save", "cat-park")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["kind"] == "edit_evaluation" and data["method"] == "rome" and data["layers"] == [1]
    assert data["edit"]["facts"][0]["prompt"] == "{} sat on the"
    assert set(data["summary"]["efficacy"]) == {"before", "after"}
    saved = load_edit(gl.load(folder), "cat-park")
    assert saved.layers == (1,) and saved.method == "rome"
    table = cli(*args)
    assert table.exit_code == 0 and "efficacy" in table.stdout and "specificity" in table.stdout


def test_memit_from_a_facts_file(cli, folder, tmp_path):
    facts = tmp_path / "facts.jsonl"
    rows = [
        {"subject": "the cat", "prompt": "{} sat on the", "target_true": " mat", "target_new": " park"},
        {"subject": "mary", "prompt": "{} went to the", "target_true": " store", "target_new": " park"},
    ]
    facts.write_text("\n".join(json.dumps(r) for r in rows))
    result = cli(
        "edit", "--facts", facts, "--method", "memit", "--layers", "0,1", "--stats-tokens", "300", "--steps", "2",
        "--no-fluency", "--model", folder, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["method"] == "memit" and data["layers"] == [0, 1] and len(data["facts"]) == 2


@pytest.mark.parametrize(
    "args",
    [
        ["trace", PROMPT, "--subject", "paris"],
        ["trace", PROMPT, "--subject", SUBJECT, "--kinds", "heads"],
        ["edit", "--subject", "the cat", "--prompt", "the cat sat on the"],
        ["edit", "--subject", "the dog", "--prompt", "the cat sat on the", "--target", " park"],
        ["edit", "--subject", "the cat", "--prompt", "{} sat", "--target", " park", "--method", "lora"],
        ["edit", "--subject", "the cat", "--prompt", "{} sat", "--target", " park", "--layer", "9"],
        [
            "edit",
            "--subject",
            "the cat",
            "--prompt",
            "{} sat",
            "--target",
            " park",
            "--layers",
            "x,y",
            "--method",
            "memit",
        ],
        ["edit", "--facts", "missing.jsonl", "--method", "memit"],
        ["edit", "--facts", "builtin:Nobody", "--method", "memit"],
    ],
)
def test_errors_are_one_line(cli, folder, args):
    result = cli(*args, "--model", folder)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.stderr
