"""Converted models live where the store API puts them (``MODELS``, ``GGUF_MODELS``), in the same folders as
before it existed, and a GGUF file whose name the store's name rule refuses (a space) still converts."""

from __future__ import annotations

import pytest

from glasslab.model import loading
from glasslab.store import GGUF_MODELS, MODELS, STORE_ENV, location


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
