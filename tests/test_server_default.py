"""The server on the real offline default model (slow): the first screen equals the Python API, re-selecting
a token reuses the forward pass, and the answers make sense for the IOI prompt."""

from __future__ import annotations

import pytest

import glasslab as gl

from .test_server import approx_tree, finite
from .test_server_helpers import client, fingerprint

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.mark.slow
def test_first_screen_on_the_default_model(default_model, tmp_path):
    c = client(default_model, tmp_path)
    before = fingerprint(default_model, weights=False)
    calls = []
    handle = default_model.hf.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        got = c.post("/api/overview", json={"prompt": PROMPT}).json()
        assert got["prediction"]["top"][0]["token"] == " Mary"
        patterns = c.post("/api/attention", json={"prompt": PROMPT, "all_patterns": True}).json()["patterns"]
        assert len(patterns) == default_model.n_layers * default_model.n_heads
        other = c.post("/api/overview", json={"prompt": PROMPT, "position": 5}).json()
        assert len(calls) == 1
    finally:
        handle.remove()
    assert got == approx_tree(finite(gl.overview(default_model, PROMPT).to_dict()))
    assert other["prediction"]["position"] == 5
    ablated = c.post("/api/ablate", json={"prompt": PROMPT, "heads": [[9, 1]], "versus": " John"}).json()
    assert ablated["predictions"]["clean"][0]["token"] == " Mary"
    assert fingerprint(default_model, weights=False) == before
