"""Cached results follow the saved artifacts they read: a steering vector or SAE saved again under the same name
(over HTTP or from Python, as the CLI does, while the server runs) gives the new result, and a deleted one
gives the documented 404, never the result cached for what was there before."""

from __future__ import annotations

import shutil

import pytest
import torch

from glasslab.methods.features.encode import sae_features
from glasslab.methods.intervene.steering import make_steering_vector
from glasslab.sae import SAE, SAEConfig, load_sae, save_sae
from glasslab.store import store_path

from .test_server import approx_tree
from .test_server_helpers import client
from .tiny import tiny_model

CATS, NUMBERS, WORDS = [["the cat sat", "the dog ran"]], [["one two three", "a b c"]], [["mary and john", "x y z"]]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path))
    return tmp_path


def test_steer_follows_the_saved_vector(home):
    model = tiny_model("gpt2")
    c = client(model, home, wait_s=0.5)  # results cached (the default)
    steer = {"prompt": "the cat", "vector": "v", "max_new_tokens": 4, "scales": [8.0]}

    def by_pairs(pairs) -> dict:
        body = {**steer, "vector": None, "pairs": pairs, "layer": 1, "method": "actadd"}
        return c.post("/api/steer", json=body).json()

    def save(pairs) -> None:
        body = {"pairs": pairs, "layer": 1, "method": "actadd", "name": "v"}
        assert c.post("/api/steering-vector", json=body).status_code == 200

    save(CATS)
    first = c.post("/api/steer", json=steer).json()
    assert first["steered"] == by_pairs(CATS)["steered"]
    with c.app.state.glasslab.state.hold("a test"):  # unchanged: served from the cache, not the busy model
        assert c.post("/api/steer", json=steer).json() == first
    save(NUMBERS)
    second = c.post("/api/steer", json=steer).json()
    assert second["steered"] == by_pairs(NUMBERS)["steered"] != first["steered"]
    make_steering_vector(model, [tuple(p) for p in WORDS], layer=1, method="actadd").save("v")  # the CLI's way
    assert c.post("/api/steer", json=steer).json()["steered"] == by_pairs(WORDS)["steered"]
    assert c.delete("/api/steering/vectors/v").status_code == 200
    gone = c.post("/api/steer", json=steer)
    assert gone.status_code == 404 and list(gone.json()) == ["error"], gone.text
    assert "no saved steering vector 'v'" in gone.json()["error"] and str(home) not in gone.text


def _sae(seed: int) -> SAE:
    sae = SAE(SAEConfig("standard", 32, 48, "blocks.1.resid_post"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(32, 48, generator=g) / 32**0.5)
        sae.W_dec.copy_(torch.randn(48, 32, generator=g) / 48**0.5)
        sae.b_enc.copy_(0.1 * torch.randn(48, generator=g))
    return sae


def test_sae_results_follow_the_saved_sae(home):
    model = tiny_model("llama")
    c = client(model, home)
    folder = store_path("saes", model.key, "s")
    body = {"prompt": "when mary and john went to the store", "top": 4, "sae": "store:s"}
    dashboard = {"feature": 3, "sequences": 2, "seq_len": 8, "sae": "store:s"}
    answers = []
    for seed in (0, 1):  # the second is a retraining saved under the same name while the server runs
        save_sae(_sae(seed), folder)
        answers.append(c.post("/api/sae-features", json=body).json())
        expected = sae_features(model, load_sae("store:s", model), body["prompt"], top=4).to_dict()
        assert {k: v for k, v in answers[-1].items() if k not in ("sae_name", "neuronpedia")} == approx_tree(expected)
        assert c.post("/api/sae-dashboard", json=dashboard).status_code == 200
    assert answers[0]["tokens"] != answers[1]["tokens"]  # the two SAEs do differ on this prompt
    shutil.rmtree(folder)
    for path, request in (("sae-features", body), ("sae-dashboard", dashboard)):
        gone = c.post(f"/api/{path}", json=request)
        assert gone.status_code == 404 and "'store:s' is not one of the SAEs" in gone.json()["error"], gone.text
