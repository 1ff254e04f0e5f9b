"""Model folders glasslab refuses: pickle weights (never unpickled, with or without safetensors beside them)
and folders whose tokenizer is missing or is not the model's. Each is one line that says what to do."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import glasslab as gl
from glasslab.cli.main import app

from .test_cli import assert_error
from .test_errors import one_line
from .test_server_helpers import client, wait_job
from .tiny import save_tiny, tiny_hf, tiny_model, word_tokenizer


@pytest.fixture(autouse=True)
def no_unpickling(monkeypatch):
    """Any torch.load during these tests is a failure: refused weights must not even be read."""

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called on a refused checkpoint")

    monkeypatch.setattr(torch, "load", refuse)


def pickled_folder(folder: Path, weights: str = "pytorch_model.bin") -> Path:
    """A tiny llama with its tokenizer and its weights as a pickle (the layout of older hub uploads;
    transformers 5's save_pretrained writes safetensors whatever it is told, so the pickle is torch.save's)."""
    tiny_hf("llama").save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    with open(folder / weights, "wb") as file:
        torch.save(tiny_hf("llama").state_dict(), file)
    return folder


# -- pickle weights --------------------------------------------------------------------------------
@pytest.mark.parametrize("weights", ["pytorch_model.bin", "model.pt", "model.pth", "model.ckpt"])
def test_pickle_only_folder_is_refused(tmp_path, weights):
    folder = pickled_folder(tmp_path / "pickled", weights)
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(folder)
    text = one_line(info.value, kind=gl.ModelLoadError)
    assert f"holds only pickle weights ({weights})" in text
    assert "save_pretrained" in text  # says how to convert


def test_broken_safetensors_never_fall_back_to_the_pickle(tmp_path):
    """A damaged model.safetensors beside pytorch_model.bin: transformers must not read the .bin instead."""
    folder = pickled_folder(tmp_path / "pickled")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(folder)
    assert "corrupt or truncated" in one_line(info.value, kind=gl.ModelLoadError)


def test_transformers_is_told_safetensors_only(tmp_path, monkeypatch):
    """The loader asks transformers for safetensors explicitly, so no later path can pick a pickle."""
    from glasslab.model import loading

    seen: list[dict] = []
    real = loading.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(loading.AutoModelForCausalLM, "from_pretrained", spy)
    folder = tmp_path / "tiny"
    save_tiny("llama", folder)
    gl.load(folder)
    assert [kwargs.get("use_safetensors") for kwargs in seen] == [True]


def test_an_unrelated_safetensors_file_does_not_let_the_pickle_in(tmp_path):
    """The server's folder check looks for any *.safetensors; the loader itself must still refuse."""
    folder = pickled_folder(tmp_path / "pickled")
    (folder / "adapter.safetensors").write_bytes(b"dummy")
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(folder)
    assert "holds only pickle weights (pytorch_model.bin)" in one_line(info.value, kind=gl.ModelLoadError)


def test_pickle_folder_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    folder = pickled_folder(tmp_path / "pickled")
    line = assert_error(CliRunner().invoke(app, ["predict", "the cat", "--model", str(folder)]))
    assert "only pickle weights" in line


def test_pickle_folder_through_the_api(tmp_path):
    """Allowed folder, a dummy .safetensors to pass the server's own check: the load job fails, the model stays."""
    root = tmp_path / "models"
    folder = pickled_folder(root / "pickled")
    (folder / "dummy.safetensors").write_bytes(b"dummy")
    c = client(tiny_model("gpt2"), tmp_path, model_roots=[root])
    before = c.get("/api/model").json()["name"]
    job = c.post("/api/model/load", json={"source": str(folder)})
    assert job.status_code == 202, job.json()
    failed = wait_job(c, job.json()["id"])
    assert failed["status"] == "failed" and "only pickle weights" in failed["error"], failed
    assert c.get("/api/model").json()["name"] == before


def test_the_suggested_conversion_works(tmp_path, monkeypatch):
    """Run the command the message gives (in a fresh interpreter, where transformers reads the pickle with
    torch.load(weights_only=True)); its output folder loads with the original weights."""
    folder = pickled_folder(tmp_path / "pickled")
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(folder)
    match = re.search(r'python -c "([^"]+)" and load (\S+)$', str(info.value))
    assert match, str(info.value)
    subprocess.run([sys.executable, "-c", match[1]], check=True, capture_output=True, timeout=300)
    converted = gl.load(match[2]).hf.state_dict()
    original = tiny_hf("llama").state_dict()
    assert converted.keys() == original.keys()
    assert all(torch.equal(converted[name], original[name]) for name in original)  # copied, not computed


def test_a_folder_without_any_weights(tmp_path):
    folder = tmp_path / "empty-weights"
    save_tiny("llama", folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(folder)
    assert "holds no model.safetensors" in one_line(info.value, kind=gl.ModelLoadError)


# -- tokenizers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "gemma3", "llama"])
def test_a_folder_without_tokenizer_files_is_refused(tmp_path, family):
    """transformers would build a 1- to 5-token tokenizer for gpt2 and gemma and predict garbage."""
    folder = tmp_path / family
    tiny_hf(family).save_pretrained(folder)
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(folder)
    assert "has no tokenizer files" in one_line(info.value, kind=gl.ModelLoadError)


def test_a_tokenizer_far_smaller_than_the_embedding_is_refused(tmp_path):
    """Tokenizer files present but not the model's: 6 tokens for 96 embedding rows."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path / "mismatched"
    save_tiny("llama", folder)
    backend = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1, "b": 2, "c": 3, "d": 4, "e": 5}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>").save_pretrained(folder)
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(folder)
    assert "has 6 tokens for the model's 96 embedding rows" in one_line(info.value, kind=gl.ModelLoadError)


def test_a_folder_without_tokenizer_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    folder = tmp_path / "no-tokenizer"
    save_tiny("gemma3", folder)
    for path in folder.glob("tokenizer*"):
        path.unlink()
    line = assert_error(CliRunner().invoke(app, ["predict", "the cat", "--model", str(folder)]))
    assert "has no tokenizer files" in line
    shutil.rmtree(folder)
