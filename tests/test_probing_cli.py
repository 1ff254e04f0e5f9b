"""``glasslab probe`` and ``glasslab erase`` on a tiny saved model: JSON, --out, the saved vector used by
``glasslab steer``, and one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import glasslab.cli.main  # noqa: F401  (registers every command)
from glasslab.cli.app import app
from glasslab.errors import InputError
from glasslab.operations.probing import parse_layers

from .tiny import save_tiny

SMALL, LARGE = ["one", "two", "three", "four", "five"], ["six", "seven", "eight", "nine", "ten"]
CONTEXTS = ["the cat sat on", "when mary and john went to", "a dog ran to the park and", "the capital of"]


@pytest.fixture
def cli(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    folder = tmp_path / "tiny-gemma3"
    save_tiny("gemma3", folder)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [*map(str, args), "--model", str(folder)])

    return invoke


@pytest.fixture
def numbers(tmp_path):
    path = tmp_path / "numbers.jsonl"
    rows = [
        {"text": f"{c} {w}", "label": "small" if w in SMALL else "large", "position": w}
        for c in CONTEXTS
        for w in SMALL + LARGE
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return path


def test_probe_json_out_and_saved_vector_steers(cli, numbers, tmp_path):
    result = cli(
        "probe", numbers, "--layers", "0-2", "--save-vector", "size", "--vector-layer", "1", "--json",
        "--out", tmp_path / "probe.html",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["kind"] == "probe" and [p["hook"] for p in facts["layers"]] == [
        f"blocks.{i}.resid_post" for i in range(3)
    ]
    assert facts["folds"] == "grouped" and facts["word_types"] == 10
    assert (tmp_path / "probe.html").exists() and "glasslab steer PROMPT --vector size" in result.stderr
    steered = cli("steer", "the cat sat on", "--vector", "size", "--scale", "2", "--max-new-tokens", "3")
    assert steered.exit_code == 0, steered.output
    assert "probe" in steered.stdout and "baseline" in steered.stdout
    table = cli("probe", numbers, "--hook", "mlp.post", "--layers", "1", "--probe", "ridge")
    assert table.exit_code == 0 and "blocks.1.mlp.post" in table.stdout and "selectivity" in table.stdout


def test_erase_json_and_table(cli, numbers):
    result = cli("erase", numbers, "--hook", "embed", "--json", "--no-loss")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["kind"] == "erasure" and facts["hook"] == "embed" and facts["loss_before"] is None
    assert len(facts["downstream"]) == 3
    table = cli("erase", numbers, "--layer", "1", "--no-downstream", "--position", "-1")
    assert table.exit_code == 0, table.output
    assert "LEACE erasure" in table.stdout and "neutral texts" in table.stdout


def test_cli_errors_are_one_line(cli, tmp_path, numbers):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,position\nthe cat,last\n", encoding="utf-8")
    cases = [
        (("probe", bad), "lacks column(s) 'label'"),
        (("probe", "nope"), "unknown probing dataset"),
        (("probe", numbers, "--layers", "0-9"), "layer 3 is out of range"),
        (("probe", numbers, "--layers", "x"), "--layers takes numbers"),
        (("probe", numbers, "--save-vector", "v"), "together"),
        (("probe", numbers, "--hook", "attn.pattern"), "cannot be probed"),
        (("erase", numbers), "give a layer"),
        (("erase", numbers, "--hook", "blocks.0.attn.pattern"), "cannot act on"),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and "Traceback" not in result.output


def test_parse_layers():
    assert parse_layers("", "layers") is None and parse_layers("all", "layers") is None
    assert parse_layers("3,0-1,1", "layers") == [0, 1, 3]
    with pytest.raises(InputError, match="--layers takes numbers"):
        parse_layers("1-", "layers")
