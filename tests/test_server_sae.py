"""SAE endpoints on a tiny model with an SAE saved in the store: the list, features per token, the dashboard and
clamps equal glasslab.sae's own results; SAEs are named, never given as paths."""

from __future__ import annotations

import json

import pytest

from glasslab.methods.features.clamp import clamp_features, clamp_sweep
from glasslab.methods.features.dashboard import feature_dashboard
from glasslab.methods.features.encode import sae_features
from glasslab.sae import load_sae, save_sae
from glasslab.store import store_path

from .test_server import approx_tree
from .test_server_helpers import client, fingerprint
from .tiny import tiny_model, tiny_sae

PROMPT = "when mary and john went to the store john gave a drink to"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = tmp_path_factory.mktemp("sae-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(home))
        model = tiny_model("llama")
        save_sae(tiny_sae(), store_path("saes", model.key, "tiny-sae"))
        yield model, load_sae("store:tiny-sae", model), client(model, home)


def same(api: dict, result) -> None:
    """The API's answer is the result's to_dict() plus what the server adds (the SAE's name, a Neuronpedia URL
    template) where the result has no such field."""
    expected = json.loads(json.dumps(result.to_dict()))
    added = {k for k in ("sae_name", "neuronpedia") if k not in expected}
    assert {k: v for k, v in api.items() if k not in added} == approx_tree(expected)


def test_sae_endpoints_equal_glasslab_sae(setup):
    model, sae, c = setup
    listed = c.get("/api/saes").json()["saes"]
    assert [s["name"] for s in listed] == ["store:tiny-sae"] and listed[0]["hook"] == "blocks.1.resid_post"
    got = c.post("/api/sae-features", json={"prompt": PROMPT, "top": 4}).json()
    assert got["sae_name"] == "store:tiny-sae"
    same(got, sae_features(model, sae, PROMPT, top=4))
    got = c.post("/api/sae-dashboard", json={"feature": 3, "sequences": 4, "seq_len": 16}).json()
    same(got, feature_dashboard(model, sae, 3, sequences=4, seq_len=16))
    before = fingerprint(model)
    body = {"prompt": PROMPT, "features": [3, 7], "mode": "scale", "amount": 4.0, "max_new_tokens": 3}
    got = c.post("/api/sae-clamp", json=body).json()
    same(got, clamp_features(model, sae, PROMPT, [3, 7], scale=4.0, max_new_tokens=3))
    body = {"prompt": PROMPT, "features": [3], "amounts": [0.0, 5.0], "max_new_tokens": 3}
    got = c.post("/api/sae-clamp", json=body).json()
    same(got, clamp_sweep(model, sae, PROMPT, [3], [0.0, 5.0], max_new_tokens=3))
    assert fingerprint(model) == before


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"prompt": PROMPT, "sae": "/etc/passwd"}, "is not one of the SAEs"),
        ({"prompt": PROMPT, "sae": "store:../../x"}, "is not one of the SAEs"),
        ({"prompt": PROMPT, "sae": "gpt2-small-res-jb/blocks.0.hook_resid_pre"}, "is not one of the SAEs"),
    ],
)
def test_saes_are_named_not_pathed(setup, body, says):
    _, _, c = setup
    response = c.post("/api/sae-features", json=body)
    assert response.status_code == 404 and says in response.json()["error"]


def test_clamp_arguments(setup):
    _, _, c = setup
    response = c.post("/api/sae-clamp", json={"prompt": PROMPT, "features": [3]})
    assert response.status_code == 400 and response.json()["error"].startswith("amount:")
    response = c.post("/api/sae-clamp", json={"prompt": PROMPT, "features": [99], "amount": 1.0})
    assert response.status_code == 400 and "out of range" in response.json()["error"]
    response = c.post("/api/sae-dashboard", json={"feature": 48})
    assert response.status_code == 400
