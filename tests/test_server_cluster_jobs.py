"""The workbench's other corpus jobs on the server's Ray cluster (``glasslab serve --cluster``), as its SAE
training (``test_server_cluster.py``): a request only asks for the operator's cluster (``on_cluster``); without
one it is a one-line 400. On a local two-worker cluster:

- "Build transcoders" harvests every layer's MLP input and output on the cluster, trains the set from that
  harvest data-parallel and deletes the harvest. The set is listed, draws a graph, and equals the set trained
  in this process from a harvest with the same settings to 1e-4 of each weight's scale: the two trainings read
  the same rows in the same order and differ only in the order each step's gradient is summed over the two
  ranks (``test_ray_transcoder_training.py``). A cancel, in the harvest or in the training, leaves no set, no
  harvest, no checkpoint and no hidden folder.
- The SAE precompute scans the corpus on the cluster and writes the same labels and dashboards as one in this
  process (the scan's result does not depend on where it ran); a cancel writes neither.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from glasslab.activations import harvest
from glasslab.app.transcoder_training import HARVEST_DTYPE
from glasslab.cluster import cluster_spec, run_units
from glasslab.dictionaries.labels_file import LABELS_FILE
from glasslab.dictionaries.transcoder_rows import pair_hooks
from glasslab.dictionaries.transcoder_set import TranscoderSet
from glasslab.dictionaries.transcoder_train import train_transcoders, transcoder_checkpoints
from glasslab.methods.features import scan as scan_module
from glasslab.methods.features.atlas import ATLAS_FILE
from glasslab.operations import OPERATIONS as DECLARED
from glasslab.operations.transcoders import TranscoderSizes, train_config
from glasslab.sae import save_sae
from glasslab.store import SAES, TRANSCODERS, location, store_path

from .ray_support import folder_model
from .test_sae_splice import random_sae
from .test_server_helpers import client, wait_job
from .test_server_sae_train import watch
from .tiny import WORDS, tiny_model

WORKERS = 2
SMALL = {
    "d_sae": 16, "k": 4, "tokens": 128 * 8, "harvest_tokens": 2048, "buffer_tokens": 512, "batch_size": 128,
    "seq_len": 16,
}  # fmt: skip
REL = 1e-4  # as test_ray_transcoder_training.py: float rounding of the gradient's sum over 8 Adam steps
HARVEST_SHARDS = 16  # as the job cuts its harvest (app/transcoder_training.py)


def submit(c, kind: str, params: dict):
    return c.post("/api/jobs", json={"kind": kind, "params": params})


@pytest.mark.parametrize("kind", ["transcoders-train", "sae-precompute"])
def test_the_request_asks_for_the_cluster_and_never_names_one(kind):
    properties = DECLARED[kind].http_options.model_json_schema()["properties"]
    assert properties["on_cluster"]["type"] == "boolean" and properties["on_cluster"]["default"] is False
    assert not {"cluster", "workers", "worker_gpus"} & set(properties)  # the operator's choice, not a request's
    assert "on_cluster" not in DECLARED[kind].options.model_fields.keys() - DECLARED[kind].server_only


@pytest.mark.parametrize(
    ("kind", "params"), [("transcoders-train", SMALL), ("sae-precompute", {"sae": "store:mine", "sequences": 8})]
)
def test_on_cluster_without_a_cluster_is_one_line_saying_how_to_start_one(tmp_path, monkeypatch, kind, params):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "home"))
    model = tiny_model("gpt2")
    save_sae(random_sae(model), store_path("saes", model.key, "mine"))
    c = client(model, tmp_path)
    response = submit(c, kind, {**params, "on_cluster": True})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "\n" not in error and "glasslab serve --cluster local" in error
    assert c.get("/api/jobs").json()["jobs"] == []


def test_a_cluster_build_checks_its_batch_before_connecting(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path_factory.mktemp("home")))
    unreachable = cluster_spec("127.0.0.1:1", WORKERS)  # never connected to: the request is refused first
    c = client(folder_model(tmp_path_factory, "gpt2"), tmp_path_factory.mktemp("db"), cluster=unreachable)
    odd = submit(c, "transcoders-train", {**SMALL, "batch_size": 127, "on_cluster": True})
    assert odd.status_code == 400 and "does not divide among the cluster's 2 workers" in odd.json()["error"]
    assert c.get("/api/jobs").json()["jobs"] == []


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store shared with the Ray workers (their GLASSLAB_HOME is fixed when Ray starts)."""
    home = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(home))
        patch.setenv("GLASSLAB_PROGRESS", "0")
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield home


@pytest.fixture(scope="module")
def on_ray(store, tmp_path_factory):
    """A workbench on a tiny model loaded from its folder, with a local two-worker Ray cluster."""
    ray = pytest.importorskip("ray", reason="the Ray tests need the ray extra (pip install 'glasslab[ray]')")
    pytest.importorskip("ray.train", reason="training on a cluster needs the ray extra: pip install 'glasslab[ray]'")
    env = {"GLASSLAB_HOME": str(store), "GLASSLAB_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": env})  # fmt: skip
    model = folder_model(tmp_path_factory, "gpt2")
    yield model, client(model, tmp_path_factory.mktemp("db"), cluster=cluster_spec("local", WORKERS))
    ray.shutdown()


def locally_trained(model, tmp_path):
    """The set trained in this process from a harvest with the job's settings."""
    config = train_config(**TranscoderSizes(**SMALL).model_dump())
    rows = config.harvest_tokens
    hooks, shard_tokens = pair_hooks(config.layers_of(model)), math.ceil(rows / HARVEST_SHARDS)
    options = dict(corpus=config.corpus, tokens=rows, seq_len=config.seq_len, shard_tokens=shard_tokens)
    options.update(dtype=HARVEST_DTYPE)  # the job harvests in bfloat16, which the training reads as float32
    folder = harvest(model, hooks, str(tmp_path / "harvest"), **options).url
    run = train_transcoders(model, replace(config, activations=folder), name="reference", out=tmp_path / "set")
    return TranscoderSet.load(run.path, model)


def assert_nothing_left(model, name: str) -> None:
    """No set, no hidden staging or harvest folder beside where it would be, and no checkpoint."""
    sets = location(TRANSCODERS, model.key, name).parent
    assert not sets.exists() or [entry.name for entry in sets.iterdir() if name in entry.name] == []
    assert transcoder_checkpoints(model, name).latest() is None
    assert not transcoder_checkpoints(model, name).folder.exists()


def test_a_build_on_the_cluster_harvests_trains_and_equals_the_local_set(on_ray, tmp_path):
    model, c = on_ray
    started = submit(c, "transcoders-train", {**SMALL, "evaluate_tokens": 128, "on_cluster": True})
    assert started.status_code == 202
    job, seen = watch(c, started.json()["id"], lambda j: False)
    assert job["status"] == "done", job["error"]
    stages = [j["stage"] for j in seen]
    harvesting = [j for j in seen if j["stage"].startswith("harvesting 3 layers' MLP inputs and outputs")]
    assert harvesting and stages.index(harvesting[0]["stage"]) < stages.index("training")
    assert [j["done"] for j in harvesting] == sorted(j["done"] for j in harvesting)
    assert all(j["total"] == 2048 for j in harvesting)
    assert any(stage.startswith("starting the Ray workers") for stage in stages)
    steps = [j["done"] for j in seen if j["stage"] == "training"]
    assert steps == sorted(steps) and all(j["total"] == 8 for j in seen if j["stage"] == "training")
    result = job["result"]
    name = result["name"]
    assert result["workers"] == WORKERS and result["steps"] == 8 and result["layers"] == [0, 1, 2]
    pairs = 2048 * 3 * 2 * model.d_model * 2  # rows x layers x (mlp.in, mlp_out) x d_model x bfloat16's 2 bytes
    assert pairs < result["plan"]["harvest_bytes"] < 1.1 * pairs  # and whole sequences, with each row's ids
    assert "deleted after" in harvesting[0]["stage"]
    assert result["evaluation"]["tokens"] >= 128
    record = json.loads((location(TRANSCODERS, model.key, name) / "training.json").read_text())
    assert record["workers"] == WORKERS

    # The harvest is gone, and nothing but the set is left beside it.
    beside = [entry.name for entry in location(TRANSCODERS, model.key, name).parent.iterdir()]
    assert beside == [name]
    assert not transcoder_checkpoints(model, name).folder.exists()

    assert [s["name"] for s in c.post("/api/transcoders-list", json={}).json()["sets"]] == [name]
    graph = wait_job(c, submit(c, "graph", {"prompt": "when mary and john", "transcoders": name}).json()["id"])
    assert graph["status"] == "done", graph["error"]
    assert graph["result"]["kind"] == "attribution_graph"

    built, reference = TranscoderSet.load(name, model), locally_trained(model, tmp_path)
    assert sorted(built.layers) == sorted(reference.layers) == [0, 1, 2]
    for layer in reference.layers:
        for weight, theirs in reference[layer].named_parameters():
            mine = getattr(built[layer], weight)
            scale = max(1.0, float(theirs.abs().max()))
            torch.testing.assert_close(mine, theirs, rtol=0, atol=REL * scale, msg=lambda m, w=weight: f"{w}: {m}")
    shutil.rmtree(location(TRANSCODERS, model.key, name))  # the panel offers the build only without a set


def test_cancelling_a_build_while_the_cluster_harvests_leaves_nothing(on_ray):
    model, c = on_ray
    params = {**SMALL, "harvest_tokens": 65_536, "on_cluster": True, "name": "cancelled-harvest"}
    job_id = submit(c, "transcoders-train", params).json()["id"]
    job, _ = watch(c, job_id, lambda j: j["stage"].startswith("harvesting"))
    assert job["status"] == "running"
    c.post(f"/api/jobs/{job_id}/cancel")
    _, seen = watch(c, job_id, lambda j: False)
    assert seen[-1]["status"] == "cancelled"
    assert "training" not in {j["stage"] for j in seen}
    harvested = [j["done"] for j in seen if j["stage"].startswith("harvesting")]
    assert harvested[-1] < 65_536  # the cancel stopped the cluster's harvest before its end
    assert_nothing_left(model, "cancelled-harvest")
    assert c.post("/api/transcoders-list", json={}).json()["sets"] == []


def test_cancelling_a_build_while_the_cluster_trains_leaves_nothing(on_ray):
    model, c = on_ray
    params = {**SMALL, "tokens": 128 * 4000, "evaluate_tokens": 0, "on_cluster": True, "name": "cancelled-training"}
    job_id = submit(c, "transcoders-train", params).json()["id"]
    job, _ = watch(c, job_id, lambda j: j["stage"] == "training" and j["done"] >= 2)
    assert job["status"] == "running"
    c.post(f"/api/jobs/{job_id}/cancel")
    assert wait_job(c, job_id)["status"] == "cancelled"
    assert_nothing_left(model, "cancelled-training")
    assert c.post("/api/transcoders-list", json={}).json()["sets"] == []


@pytest.fixture
def twins(on_ray, store):
    """Two store SAEs with the same weights, trained (so their record says) on a corpus of many documents."""
    model, c = on_ray
    corpus = store.parent / "words.jsonl"
    lines = [json.dumps({"text": " ".join(WORDS[i:] + WORDS[:i])}) for i in range(len(WORDS))] * 8
    corpus.write_text("\n".join(lines) + "\n")
    sae = random_sae(model)
    folders = [save_sae(sae, store_path("saes", model.key, name)) for name in ("on-ray", "here")]
    for folder in folders:
        (folder / "training.json").write_text(json.dumps({"config": {"corpus": str(corpus)}}))
    yield model, c, folders
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def scans(monkeypatch) -> list[list[bool]]:
    """Each corpus scan the server ran: whether it was handed to the cluster, and whether it ran to the end."""
    seen: list[list[bool]] = []

    def spied(job, units, *, spec, **options):
        seen.append(scan := [spec.distributed, False])
        yield from run_units(job, units, spec=spec, **options)
        scan[1] = True

    monkeypatch.setattr(scan_module, "run_units", spied)
    return seen


def precompute(c, sae: str, **params) -> dict:
    body = {"sae": sae, "sequences": 24, "held_out_sequences": 16, **params}
    return wait_job(c, submit(c, "sae-precompute", body).json()["id"])


def test_a_precompute_on_the_cluster_writes_the_same_labels_and_dashboards(twins, scans):
    _, c, (on_ray_folder, here_folder) = twins
    on_ray = precompute(c, "store:on-ray", on_cluster=True)
    assert on_ray["status"] == "done", on_ray["error"]
    here = precompute(c, "store:here")
    assert here["status"] == "done", here["error"]
    assert scans == [[True, True], [False, True]]
    assert on_ray["result"]["on_cluster"] is True and here["result"]["on_cluster"] is False
    drop = ("sae", "on_cluster")
    assert {k: v for k, v in on_ray["result"].items() if k not in drop} == {
        k: v for k, v in here["result"].items() if k not in drop
    }
    labels = [json.loads((folder / LABELS_FILE).read_text())["features"] for folder in (on_ray_folder, here_folder)]
    assert labels[0].keys() == labels[1].keys() and labels[0]
    for feature, entry in labels[1].items():
        assert labels[0][feature]["label"] == entry["label"], feature
    boards = [load_file(folder / ATLAS_FILE) for folder in (on_ray_folder, here_folder)]
    assert boards[0].keys() == boards[1].keys()
    for key, theirs in boards[1].items():
        torch.testing.assert_close(boards[0][key], theirs, msg=lambda m, k=key: f"{k}: {m}")
    listed = {s["name"]: s for s in c.get("/api/saes").json()["saes"]}
    assert listed["store:on-ray"]["precomputed"] is True


def test_cancelling_a_precompute_on_the_cluster_writes_nothing(twins, scans, store):
    model, c, (folder, _) = twins
    # Text for every one of the 8192 sequences asked for, so the scan outlasts the cancel by far.
    rng = random.Random(0)
    corpus = store.parent / "many-words.jsonl"
    lines = [json.dumps({"text": " ".join(rng.choices(WORDS, k=200))}) for _ in range(4000)]
    corpus.write_text("\n".join(lines) + "\n")
    (folder / "training.json").write_text(json.dumps({"config": {"corpus": str(corpus)}}))
    body = {"sae": "store:on-ray", "sequences": 8192, "held_out_sequences": 16, "on_cluster": True}
    job_id = submit(c, "sae-precompute", body).json()["id"]
    job, _ = watch(c, job_id, lambda j: "on the Ray cluster" in j["stage"] and j["done"] > 0)
    assert job["status"] == "running"  # and the scan's progress moves as the cluster's units come back
    c.post(f"/api/jobs/{job_id}/cancel")
    _, seen = watch(c, job_id, lambda j: False)
    assert seen[-1]["status"] == "cancelled"
    assert scans == [[True, False]]  # the cancel stopped the cluster's scan before its end
    assert not (folder / LABELS_FILE).exists() and not (folder / ATLAS_FILE).exists()
    assert location(SAES, model.key, "on-ray") == folder
