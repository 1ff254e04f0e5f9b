"""Hub ids resolve through the Hugging Face cache, offline: the path users take with gl.load("gpt2")."""

from __future__ import annotations

import huggingface_hub.constants
import pytest
import torch

import glasslab as gl

from .tiny import save_tiny, tiny_hf

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_cache(root, repo_id: str, family: str) -> None:
    """Lay out a model in the hub cache exactly as huggingface_hub stores a download."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    save_tiny(family, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


def test_hub_id_loads_from_the_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    fake_hub_cache(tmp_path, "glasslab-test/tiny-llama", "llama")
    model = gl.load("glasslab-test/tiny-llama")
    assert model.name == "glasslab-test/tiny-llama"
    ids = model.to_tokens("the cat sat on the mat")
    with torch.inference_mode():
        expected = tiny_hf("llama")(ids).logits
    assert torch.equal(model.run(ids).logits, expected)


def test_hub_id_missing_from_the_cache_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(gl.ModelLoadError) as error:
        gl.load("glasslab-test/not-downloaded")
    message = str(error.value)
    assert "\n" not in message
    assert "HF_HUB_OFFLINE" in message and "hf download glasslab-test/not-downloaded" in message
