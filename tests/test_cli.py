"""The ``glasslab`` command: JSON and table output on a tiny model folder, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import glasslab as gl
from glasslab.cli.main import app

from .deadlines import MODEL_S
from .tiny import save_tiny


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "tiny-llama"
    save_tiny("llama", path)
    return path


@pytest.fixture(scope="module")
def api_model(folder) -> gl.Model:
    """The same folder loaded through the Python API, to compare the CLI's numbers with."""
    return gl.load(folder)


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """Invoke the app in-process (offline, with a throwaway store); returns the click Result."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


def ok_json(result) -> dict:
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    return json.loads(result.stdout)


def assert_error(result) -> str:
    """Exit status 2, nothing on stdout, no traceback, and the last stderr line is the one error line."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert lines[-1] == errors[0]
    return errors[0]


# -- JSON ------------------------------------------------------------------------------------------
def test_info_json(cli, folder, api_model):
    data = ok_json(cli("info", "--model", folder, "--json"))
    assert data["kind"] == "model_info"
    assert data["name"] == "tiny-llama"
    assert data["family"] == api_model.arch.name
    assert data["model_type"] == "llama"
    assert (data["n_layers"], data["n_heads"], data["n_kv_heads"]) == (3, 4, 2)
    assert (data["d_model"], data["d_head"], data["d_mlp"]) == (32, 8, 64)
    assert data["vocab_size"] == 96
    assert data["context_length"] == 64
    assert data["n_params"] == sum(p.numel() for p in api_model.hf.parameters())
    assert data["dtype"] == "float32"
    assert data["device"] == "cpu"
    assert data["n_hooks"] == len(api_model.hooks())
    assert data["bos_token"] == "<bos>"
    assert data["stored_at"] == str(folder.resolve())


def test_info_json_dtype_option(cli, folder):
    data = ok_json(cli("info", "--model", folder, "--dtype", "bfloat16", "--json"))
    assert data["dtype"] == "bfloat16"


def test_predict_json(cli, folder, api_model):
    data = ok_json(cli("predict", "the cat sat", "-k", "5", "--model", folder, "--json"))
    expected = gl.predict(api_model, "the cat sat", k=5).to_dict()
    assert data["kind"] == "prediction"
    assert data["prompt"] == "the cat sat"
    assert data["position"] == 3  # <bos> the cat sat
    assert data["context_token"] == "sat"
    assert [s["rank"] for s in data["top"]] == [1, 2, 3, 4, 5]
    probabilities = [s["probability"] for s in data["top"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert data["target"] is None
    assert [s["token_id"] for s in data["top"]] == [s["token_id"] for s in expected["top"]]
    for got, want in zip(data["top"], expected["top"], strict=True):
        assert got["token"] == want["token"]
        assert got["probability"] == pytest.approx(want["probability"])
        assert got["logit"] == pytest.approx(want["logit"])
    assert data["entropy_nats"] == pytest.approx(expected["entropy_nats"])


def test_predict_target_and_position(cli, folder, api_model):
    args = ("predict", "the cat sat", "--target", " paris", "--position", "1", "--model", folder, "--json")
    data = ok_json(cli(*args))
    expected = gl.predict(api_model, "the cat sat", position=1, target=" paris")
    assert data["position"] == 1
    assert data["context_token"] == "the"
    assert data["target"]["token"] == "paris"
    assert data["target"]["token_id"] == api_model.tokenizer.convert_tokens_to_ids("paris")
    assert data["target"]["rank"] == expected.target.rank
    assert data["target"]["probability"] == pytest.approx(expected.target.probability)
    assert len(data["top"]) == 10  # the default k


def test_generate_json(cli, folder, api_model):
    data = ok_json(cli("generate", "the cat", "--max-new-tokens", "5", "--model", folder, "--json"))
    expected = api_model.generate("the cat", max_new_tokens=5).to_dict()
    assert data["kind"] == "generation"
    assert data["prompt"] == "the cat"
    assert data["prompt_tokens"] == 3
    assert 1 <= len(data["new_tokens"]) <= 5
    assert data["temperature"] == 0.0
    assert data == expected  # greedy: the CLI and the API agree


def test_generate_sampling_is_repeatable_with_a_seed(cli, folder):
    args = ("generate", "the cat", "--max-new-tokens", "8", "--temperature", "1.5", "--seed", "7")
    first = ok_json(cli(*args, "--model", folder, "--json"))
    second = ok_json(cli(*args, "--model", folder, "--json"))
    assert first == second
    assert first["seed"] == 7


def test_hooks_json(cli, folder, api_model):
    data = ok_json(cli("hooks", "--model", folder, "--json"))
    assert data["kind"] == "hooks"
    assert data["model"] == "tiny-llama"
    assert data["hooks"] == api_model.hooks()
    assert data["hooks"][0] == "embed"
    assert data["hooks"][-2:] == ["ln_final", "logits"]
    assert "blocks.2.resid_mid" in data["hooks"]
    assert len(data["hooks"]) == 1 + 3 * 13 + 2


def test_tokens_json_and_table(cli, folder, api_model):
    # Declared once: the command's JSON is the HTTP endpoint's (tests/test_server.py), BOS first.
    data = ok_json(cli("tokens", "the cat sat", "--model", folder, "--json"))
    assert data["kind"] == "tokens" and data["n_tokens"] == len(data["tokens"])
    assert [t["token_id"] for t in data["tokens"]] == api_model.to_tokens("the cat sat")[0].tolist()
    assert [t["position"] for t in data["tokens"]] == list(range(data["n_tokens"]))
    table = cli("tokens", "the cat sat", "--model", folder)
    assert table.exit_code == 0, table.stderr
    assert f"{data['n_tokens']} tokens" in table.stdout and "'cat'" in table.stdout.replace("' cat'", "'cat'")


# -- tables ----------------------------------------------------------------------------------------
def test_info_table(cli, folder):
    result = cli("info", "--model", folder)
    assert result.exit_code == 0, result.stderr
    assert not result.stdout.lstrip().startswith("{")
    rows = {}
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 2:
            rows[cells[0]] = cells[1]
    assert rows["n layers"] == "3"
    assert rows["n heads"] == "4"
    assert rows["vocab size"] == "96"
    assert rows["model type"] == "llama"


def test_predict_table(cli, folder, api_model):
    result = cli("predict", "the cat sat", "-k", "3", "--target", " paris", "--model", folder)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for word in ("rank", "token", "probability", "logit", "entropy", "next token after 'sat'"):
        assert word in out
    expected = gl.predict(api_model, "the cat sat", k=3, target=" paris")
    assert f"{expected.top[0].probability:.4f}" in out
    assert f"target 'paris': rank {expected.target.rank}," in out


def test_generate_text(cli, folder, api_model):
    result = cli("generate", "the cat", "--max-new-tokens", "4", "--model", folder)
    assert result.exit_code == 0, result.stderr
    expected = api_model.generate("the cat", max_new_tokens=4)
    assert result.stdout.strip() == (expected.prompt + expected.completion).strip()


def test_generate_text_with_brackets_is_printed_verbatim(cli, folder):
    """The prompt is echoed as text, not rich markup."""
    for prompt in ("the [cat] sat", "the cat [/] sat"):
        result = cli("generate", prompt, "--max-new-tokens", "2", "--model", folder)
        assert result.exit_code == 0, (result.stderr, result.exception)
        assert result.stdout.startswith(prompt)


def test_info_table_with_brackets_in_the_folder_name(cli, folder, tmp_path):
    odd = tmp_path / "tiny[v2]"
    shutil.copytree(folder, odd)
    result = cli("info", "--model", odd)
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "tiny[v2]" in result.stdout


def test_hooks_table(cli, folder):
    result = cli("hooks", "--model", folder)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "42 hooks" in out
    for name in ("embed", "blocks.{L}.resid_pre", "blocks.{L}.attn.head_out", "blocks.{L}.mlp.post", "logits"):
        assert name in out
    words = out.split()  # the table may wrap its second column at any space
    for word in ("residual", "entering", "weights"):
        assert word in words
    # the shapes are half of the "shape and meaning" column; rich must not swallow "[batch, ...]" as markup
    for word in ("[batch,", "d_model]", "d_head]", "key_pos]", "d_mlp]", "vocab]"):
        assert word in words, word


# -- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (("predict", "", "--model", "{folder}"), "PROMPT is empty"),
        (("predict", "cat " * 80, "--model", "{folder}"), "shorten the prompt"),
        (("predict", "the cat", "--position", "9", "--model", "{folder}"), "position 9 is out of range"),
        (("predict", "the cat", "-k", "0", "--model", "{folder}"), "--top-k must be >= 1, got 0"),
        (("generate", "", "--model", "{folder}"), "PROMPT is empty"),
        (("generate", "the cat", "--max-new-tokens", "70", "--model", "{folder}"), "fewer tokens"),
        (("info", "--model", "{folder}", "--dtype", "float8"), "unknown dtype 'float8'"),
        (("info", "--model", "{folder}", "--device", "tpu"), "unknown device 'tpu'"),
        (("info", "--model", "nonexistent-org/nonexistent-model"), "hf download nonexistent-org/nonexistent-model"),
        (("hooks", "--model", "/nonexistent/model.gguf"), "GGUF file '/nonexistent/model.gguf' does not exist"),
        (("info", "--model", "/nonexistent/folder"), "is not a folder or .gguf file"),
    ],
)
def test_errors_are_one_line(cli, folder, args, hint):
    line = assert_error(cli(*(str(a).replace("{folder}", str(folder)) for a in args)))
    assert hint in line


def test_truncated_model_error(cli, folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    weights = broken / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    line = assert_error(cli("info", "--model", broken))
    assert "corrupt or truncated" in line


@pytest.mark.parametrize("name", ["[bold]model.gguf", "x[/]y.gguf", "[red]a[/red].gguf"])
def test_error_text_is_printed_verbatim(cli, tmp_path, name):
    """The message is data, not rich markup: brackets in a path must neither vanish nor crash the CLI."""
    path = tmp_path / name
    line = assert_error(cli("info", "--model", path))
    assert f"'{path}'" in line


def test_console_script_exit_code_and_stderr(tmp_path):
    script = Path(sys.executable).parent / "glasslab"
    if not script.is_file():
        pytest.skip("the glasslab console script is not installed")
    missing = tmp_path / "missing.gguf"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "GLASSLAB_HOME": str(tmp_path)}
    result = subprocess.run(
        [str(script), "predict", "The capital of France is", "--model", str(missing)],
        capture_output=True,
        text=True,
        env=env,
        timeout=MODEL_S,  # a hang guard: importing torch on a busy machine takes a while
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: GGUF file '{missing}' does not exist; check the path"]


# -- the real default model ------------------------------------------------------------------------
@pytest.mark.slow
def test_predict_paris_on_the_default_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the default model comes from the user's store
    result = CliRunner().invoke(app, ["predict", "The capital of France is", "-k", "10", "--json"])
    data = ok_json(result)
    assert data["model"] == "gemma-3-270m"
    assert len(data["top"]) == 10
    assert " Paris" in [s["token"] for s in data["top"]]
