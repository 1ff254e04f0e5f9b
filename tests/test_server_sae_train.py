"""Training an SAE from the workbench, on a tiny model: the estimate, the job's progress, the new SAE listed
with its layer and giving the same features as glasslab.sae; a cancelled training leaves no SAE; the
workbench keeps answering while an SAE trains; bad requests get a one-line 4xx when the job is submitted."""

from __future__ import annotations

import time

import pytest

from glasslab.dictionaries.train import checkpoints_of
from glasslab.methods.features.encode import sae_features
from glasslab.methods.features.evaluate import evaluate_sae
from glasslab.sae import load_sae
from glasslab.store import SAES, location, read_manifest, store_path

from .deadlines import MODEL_S
from .test_server_helpers import client, fingerprint, wait_job
from .test_server_sae import same
from .tiny import tiny_model

PROMPT = "when mary and john went to the store john gave a drink to"
SMALL = {"layer": 1, "expansion": 4, "k": 4, "tokens": 256 * 24, "harvest_tokens": 2048, "batch_size": 256}
NAME = "store:blocks.1.resid_post-topk-128-k4-app"


@pytest.fixture
def served(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "home"))
    model = tiny_model("llama")
    return model, client(model, tmp_path)


def watch(c, job_id: str, until, timeout: float = MODEL_S) -> tuple[dict, list[dict]]:
    """Poll a job until ``until(job)`` or it ends; returns the last state and every state seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/api/jobs/{job_id}").json()
        seen.append(job)
        if until(job) or job["status"] not in ("queued", "running"):
            return job, seen
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not get there in {timeout} s: {seen[-1]}")


def test_a_trained_sae_is_listed_by_layer_and_gives_features(served):
    model, c = served
    listed = c.get("/api/saes").json()
    assert listed["saes"] == [] and listed["n_layers"] == 3
    assert listed["training"] == {
        "architecture": "topk", "d_sae": 8 * 32, "expansion": 8, "k": 32, "tokens": 262_144, "harvest_tokens": 65_536,
        "batch_size": 4096, "evaluate_tokens": 4096, "seed": 0,
    }  # fmt: skip
    body = {**SMALL, "evaluate_tokens": 256}
    estimate = wait_job(c, c.post("/api/jobs", json={"kind": "sae-train-estimate", "params": body}).json()["id"])[
        "result"
    ]
    assert estimate["plan"]["name"] == NAME and estimate["steps"] == 24 and estimate["seconds"] > 0
    before = fingerprint(model)

    started = c.post("/api/jobs", json={"kind": "sae-train", "params": body})
    assert started.status_code == 202
    job, seen = watch(c, started.json()["id"], lambda j: False)
    assert job["status"] == "done", job["error"]
    stages = {j["stage"] for j in seen}
    assert {"reading activations from the model", "training"} <= stages
    steps = [j["done"] for j in seen if j["stage"] == "training"]
    assert steps == sorted(steps) and all(j["total"] == 24 for j in seen if j["stage"] == "training")
    assert set(job["metrics"]) == {"loss", "fve", "l0", "dead"} and job["metrics"]["l0"] == pytest.approx(4.0)
    result = job["result"]
    assert result["name"] == NAME and result["steps"] == 24 and result["tokens_harvested"] == 2048

    saes = c.get("/api/saes").json()["saes"]
    assert [(s["name"], s["source"], s["layer"], s["hook"], s["d_sae"], s["on_disk"]) for s in saes] == [
        (NAME, "store", 1, "blocks.1.resid_post", 128, True)
    ]
    manifest = read_manifest(location(SAES, model.key, NAME.removeprefix("store:")))
    assert manifest["name"] == NAME.removeprefix("store:")  # the SAE's name, not its staging folder's
    sae = load_sae(NAME, model)
    got = c.post("/api/sae-features", json={"prompt": PROMPT, "sae": NAME, "top": 4}).json()
    same(got, sae_features(model, sae, PROMPT, top=4))
    held_out = evaluate_sae(model, sae, tokens=256, loss_tokens=0, seq_len=64)
    assert result["evaluation"]["fve"] == pytest.approx(held_out.fve, rel=1e-5)
    assert fingerprint(model) == before


def test_cancelling_leaves_no_sae_and_the_workbench_answers_meanwhile(served):
    model, c = served
    body = {**SMALL, "tokens": 256 * 4000, "evaluate_tokens": 0}
    job_id = c.post("/api/jobs", json={"kind": "sae-train", "params": body}).json()["id"]
    job, _ = watch(c, job_id, lambda j: j["stage"] == "training" and j["done"] >= 2)
    assert job["status"] == "running"
    answered = c.post("/api/predict", json={"prompt": PROMPT})  # served between the training's forward passes
    assert answered.status_code == 200 and c.get(f"/api/jobs/{job_id}").json()["status"] == "running"
    c.post(f"/api/jobs/{job_id}/cancel")
    assert wait_job(c, job_id)["status"] == "cancelled"
    assert c.get("/api/saes").json()["saes"] == []
    assert not list(store_path("saes").rglob("cfg.json"))
    assert checkpoints_of(model, NAME.removeprefix("store:")).latest() is not None

    # Cancelled while still reading activations: nothing is left at all.
    job_id = c.post("/api/jobs", json={"kind": "sae-train", "params": {**body, "name": "early"}}).json()["id"]
    c.post(f"/api/jobs/{job_id}/cancel")
    assert wait_job(c, job_id)["status"] == "cancelled"
    assert not list(store_path("saes").rglob("cfg.json")) and c.get("/api/saes").json()["saes"] == []


BOTH = ("sae-train", "sae-train-estimate")


@pytest.mark.parametrize(
    ("params", "kinds", "status", "says"),
    [
        ({"layer": 3}, BOTH, 400, "layer must be in 0..2 for tiny-llama, got 3"),
        ({"layer": -1}, BOTH, 422, "layer: Input should be greater than or equal to 0"),
        ({"layer": 1, "expansion": 1, "k": 64}, BOTH, 400, "k: 64 is more than the SAE's 32 features"),
        ({"layer": 1, "tokens": 100, "batch_size": 256}, BOTH, 400, "tokens (100) must be at least one batch (256)"),
        ({"layer": 1, "name": "../x"}, BOTH, 422, "name: String should match pattern"),
        ({"layer": 1, "steps": 5}, BOTH, 422, "steps: Extra inputs are not permitted"),
        ({"layer": 1, "name": "taken"}, ("sae-train",), 400, "store:taken exists already"),  # an estimate saves nothing
    ],
)
def test_bad_training_requests_are_refused_when_submitted(served, params, kinds, status, says):
    model, c = served
    store_path("saes", model.key, "taken").mkdir(parents=True)
    for kind in kinds:
        response = c.post("/api/jobs", json={"kind": kind, "params": params})
        assert response.status_code == status and says in response.json()["error"], response.json()
    assert c.get("/api/jobs").json()["jobs"] == []
