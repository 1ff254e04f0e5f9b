"""The workbench's SAE training on the server's Ray cluster (``glasslab serve --cluster``): a request only asks
for the operator's cluster (``on_cluster``), never names one; without a cluster, or with a model the workers
cannot reload, it is a one-line 400; on a local two-worker cluster the training saves an SAE with progress,
and a cancel stops every worker and saves none."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

import glasslab as gl
from glasslab.app import server as server_module
from glasslab.app.server import OPERATIONS
from glasslab.cli import serve as serve_module
from glasslab.cli.main import app
from glasslab.cluster import ClusterSpec, cluster_spec
from glasslab.dictionaries.train import checkpoints_of
from glasslab.errors import InputError
from glasslab.store import SAES, location

from .test_cli import assert_error
from .test_server_helpers import client, wait_job
from .test_server_sae_train import watch
from .tiny import save_tiny, tiny_model

WORKERS = 2
SMALL = {"layer": 1, "expansion": 4, "k": 4, "tokens": 256 * 24, "harvest_tokens": 2048, "batch_size": 256}


def submit(c, **params):
    return c.post("/api/jobs", json={"kind": "sae-train", "params": {**SMALL, **params}})


def test_the_training_body_has_on_cluster_and_no_address():
    [train] = [op for op in OPERATIONS if op.name == "sae-train"]
    properties = train.schema.model_json_schema()["properties"]
    assert properties["on_cluster"]["type"] == "boolean" and properties["on_cluster"]["default"] is False
    assert not {"cluster", "workers", "worker_gpus"} & set(properties)  # the operator's choice, not a request's


def test_on_cluster_without_a_cluster_is_one_line_saying_how_to_start_one(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "home"))
    c = client(tiny_model("llama"), tmp_path)
    assert c.get("/api/model").json()["cluster"] is None
    response = submit(c, on_cluster=True)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "\n" not in error and "glasslab serve --cluster local" in error
    assert c.get("/api/jobs").json()["jobs"] == []


def test_a_server_with_a_cluster_reports_it_and_checks_the_request_before_connecting(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "home"))
    unreachable = cluster_spec("127.0.0.1:1", WORKERS)  # never connected to: every request here is refused first
    c = client(tiny_model("llama"), tmp_path, cluster=unreachable)
    assert c.get("/api/model").json()["cluster"] == {"workers": WORKERS, "worker_gpus": 0.0}
    in_memory = submit(c, on_cluster=True)  # the tiny model was built here, not loaded from a folder
    assert in_memory.status_code == 400 and "Ray workers cannot load it" in in_memory.json()["error"]
    folder = tmp_path / "tiny-llama"
    save_tiny("llama", folder)
    c = client(gl.load(folder), tmp_path, cluster=unreachable)
    odd = submit(c, on_cluster=True, batch_size=255)
    assert odd.status_code == 400 and "does not divide among the cluster's 2 workers" in odd.json()["error"]
    assert c.get("/api/jobs").json()["jobs"] == []


class AppMade(InputError):
    """Raised by the stand-in create_app: the command got as far as building the app."""


def test_serve_hands_its_cluster_to_the_app_and_refuses_workers_without_one(monkeypatch):
    made: list[dict] = []

    def fake_create_app(model, **options):
        made.append(options)
        raise AppMade("app made")

    monkeypatch.setattr(serve_module, "check_port", lambda host, port: None)  # whatever else listens here
    monkeypatch.setattr(serve_module, "_load_with_progress", lambda model, dtype, device: tiny_model("llama"))
    monkeypatch.setattr(server_module, "create_app", fake_create_app)
    line = assert_error(CliRunner().invoke(app, ["serve", "--no-browser", "--cluster", "local", "--workers", "2"]))
    assert line == "error: app made" and made[0]["cluster"] == ClusterSpec("local", 2, 0.0)
    assert_error(CliRunner().invoke(app, ["serve", "--no-browser"]))
    assert made[1]["cluster"] is None
    line = assert_error(CliRunner().invoke(app, ["serve", "--no-browser", "--workers", "2"]))
    assert "give --cluster local, auto or an address" in line and len(made) == 2


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store shared with the Ray workers (their GLASSLAB_HOME is fixed when Ray starts)."""
    home = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(home))
        patch.setenv("GLASSLAB_PROGRESS", "0")
        yield home


@pytest.fixture(scope="module")
def on_ray(store, tmp_path_factory):
    """A workbench on a tiny model loaded from its folder, with a local two-worker Ray cluster."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.train", reason="training on a cluster needs the ray extra: pip install 'glasslab[ray]'")
    env = {name: os.environ[name] for name in ("GLASSLAB_HOME", "GLASSLAB_PROGRESS")}
    ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": env})  # fmt: skip
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    save_tiny("gpt2", folder)
    model = gl.load(folder)
    yield model, client(model, tmp_path_factory.mktemp("db"), cluster=cluster_spec("local", WORKERS))
    ray.shutdown()


def test_a_training_on_the_cluster_saves_an_sae_with_progress(on_ray):
    model, c = on_ray
    started = submit(c, on_cluster=True, evaluate_tokens=256)
    assert started.status_code == 202
    job, seen = watch(c, started.json()["id"], lambda j: False)
    assert job["status"] == "done", job["error"]
    stages = [j["stage"] for j in seen]
    assert stages[0].startswith("starting the Ray workers") and "training" in stages
    # Rank 0's steps as the job polled them (it may miss the last few: the evaluation here begins at once).
    steps = [j["done"] for j in seen if j["stage"] == "training"]
    assert steps == sorted(steps) and 1 <= steps[-1] <= 24
    assert all(j["total"] == 24 for j in seen if j["stage"] == "training")
    assert set(job["metrics"]) == {"loss", "fve", "l0", "dead"}
    result = job["result"]
    assert result["steps"] == 24 and result["evaluation"]["tokens"] == 256 and result["workers"] == WORKERS
    name = result["name"].removeprefix("store:")
    record = json.loads((location(SAES, model.key, name) / "training.json").read_text())
    assert record["workers"] == WORKERS
    assert [s["name"] for s in c.get("/api/saes").json()["saes"]] == [result["name"]]


def test_cancelling_a_training_on_the_cluster_stops_every_worker_and_saves_nothing(on_ray):
    model, c = on_ray
    job_id = submit(c, on_cluster=True, tokens=256 * 4000, evaluate_tokens=0, name="cancelled").json()["id"]
    job, _ = watch(c, job_id, lambda j: j["stage"] == "training" and j["done"] >= 2)
    assert job["status"] == "running"
    c.post(f"/api/jobs/{job_id}/cancel")
    assert wait_job(c, job_id)["status"] == "cancelled"
    assert "cancelled" not in {s["name"].removeprefix("store:") for s in c.get("/api/saes").json()["saes"]}
    assert checkpoints_of(model, "cancelled").latest() is not None
