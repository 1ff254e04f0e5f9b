"""Building a transcoder set from the workbench, on a tiny model: the estimate, the job's progress to a set
that the graph endpoint can use and that is listed and measured over HTTP; a cancelled build leaves no set;
bad requests get a one-line 4xx when the job is submitted."""

from __future__ import annotations

import pytest

from glasslab.store import store_path

from .test_server_helpers import client, wait_job
from .test_server_sae_train import watch
from .tiny import tiny_model

SMALL = {
    "d_sae": 16, "k": 4, "tokens": 128 * 8, "harvest_tokens": 2048, "buffer_tokens": 512, "batch_size": 128,
    "seq_len": 16,
}  # fmt: skip
NAME = "mlp-topk_skip_transcoder-16-k4"


@pytest.fixture
def served(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "home"))
    model = tiny_model("gpt2")
    return model, client(model, tmp_path)


def submit(c, kind: str, params: dict):
    return c.post("/api/jobs", json={"kind": kind, "params": params})


def test_a_built_set_is_listed_measured_and_drawn(served):
    _, c = served
    assert c.post("/api/transcoders-list", json={}).json()["sets"] == []
    estimate = wait_job(c, submit(c, "transcoders-estimate", SMALL).json()["id"])
    assert estimate["status"] == "done", estimate["error"]
    assert estimate["result"]["plan"]["name"] == NAME and estimate["result"]["steps"] == 8
    assert estimate["result"]["seconds"] > 0

    started = submit(c, "transcoders-train", {**SMALL, "evaluate_tokens": 128})
    assert started.status_code == 202
    job, seen = watch(c, started.json()["id"], lambda j: False)
    assert job["status"] == "done", job["error"]
    assert {"reading text through the model", "training"} <= {j["stage"] for j in seen}
    steps = [j["done"] for j in seen if j["stage"] == "training"]
    assert steps == sorted(steps) and all(j["total"] == 8 for j in seen if j["stage"] == "training")
    assert set(job["metrics"]) == {"loss", "fve", "l0", "dead"} and 0 < job["metrics"]["l0"] <= 4 + 1e-6
    result = job["result"]
    assert result["name"] == NAME and result["steps"] == 8 and result["layers"] == [0, 1, 2]
    assert result["evaluation"]["kind"] == "transcoder_evaluation" and result["evaluation"]["tokens"] >= 128

    assert [s["name"] for s in c.post("/api/transcoders-list", json={}).json()["sets"]] == [NAME]
    assert [s["name"] for s in c.post("/api/transcoder-sets", json={}).json()["sets"]] == [NAME]
    graph = wait_job(c, submit(c, "graph", {"prompt": "when mary and john", "transcoders": NAME}).json()["id"])
    assert graph["status"] == "done" and graph["result"]["kind"] == "attribution_graph"
    measured = c.post("/api/transcoders-eval", json={"transcoders": NAME, "tokens": 64, "loss_tokens": 16})
    assert measured.status_code == 200 and len(measured.json()["layers"]) == 3

    again = submit(c, "transcoders-train", SMALL)  # the name is taken now
    assert again.status_code == 400 and "exists already" in again.json()["error"]


def test_cancelling_leaves_no_set(served):
    _, c = served
    job_id = submit(c, "transcoders-train", {**SMALL, "tokens": 128 * 4000, "evaluate_tokens": 0}).json()["id"]
    job, _ = watch(c, job_id, lambda j: j["stage"] == "training" and j["done"] >= 2)
    assert job["status"] == "running"
    c.post(f"/api/jobs/{job_id}/cancel")
    assert wait_job(c, job_id)["status"] == "cancelled"
    assert c.post("/api/transcoders-list", json={}).json()["sets"] == []
    assert not list(store_path("transcoders").rglob("transcoders.json"))


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"layers": [3]}, 400, "layers must be distinct layers"),
        ({"k": 32, "d_sae": 16}, 400, "k: 32 is more than the 16 features"),
        ({"architecture": "topk"}, 400, "trains"),
        ({"corpus": "/etc/passwd"}, 422, "corpus"),
        ({"name": "../up"}, 422, "name"),
    ],
)
def test_bad_requests_are_refused_when_submitted(served, params, status, says):
    _, c = served
    for kind in ("transcoders-train", "transcoders-estimate"):
        if kind == "transcoders-estimate" and "name" in params:
            continue
        answer = submit(c, kind, {**SMALL, **params})
        assert answer.status_code == status, (kind, answer.json())
        assert says in answer.json()["error"]


def test_a_build_over_the_servers_memory_is_refused(served, monkeypatch):
    _, c = served
    monkeypatch.setattr("glasslab.app.transcoder_training.MAX_MEMORY", 2**16)  # the tiny model needs more
    for kind in ("transcoders-train", "transcoders-estimate"):
        answer = submit(c, kind, SMALL)
        assert answer.status_code == 400 and "GiB in memory" in answer.json()["error"]
