"""Isolation and jobs: concurrent clients mixing steered, ablated and plain requests get exactly what they get
alone; jobs report progress and cancel; a cancelled or failed job leaves weights, hooks and open interventions
as they were; a busy model answers 503 and too many jobs 429."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from glasslab.app import create_app
from glasslab.app.ops import execute
from glasslab.app.server import OPERATIONS
from glasslab.operations.intervene import AblateOptions
from glasslab.operations.observe import PredictOptions

from .deadlines import MODEL_S, STEP_S
from .test_server_helpers import client, fingerprint, live_server, wait_job
from .tiny import tiny_model

PAIRS = [["the cat sat", "the dog ran"], ["mary gave a drink", "john went to the store"]]
REQUESTS = [
    ("predict", {"prompt": "when mary and john went to the store john gave a drink to"}),
    ("predict", {"prompt": "the cat sat on the mat"}),
    ("ablate", {"prompt": "the cat sat on the mat", "heads": [[0, 1], [1, 2]], "target": "mat"}),
    ("ablate", {"prompt": "the cat sat on the mat", "mlp_layers": [1], "target": "mat"}),
    ("steer", {"prompt": "the cat", "pairs": PAIRS, "layer": 1, "scales": [6.0], "max_new_tokens": 3}),
    ("steer", {"prompt": "mary gave", "pairs": PAIRS, "layer": 2, "scales": [-3.0, 9.0], "max_new_tokens": 2}),
    ("generate", {"prompt": "the cat", "max_new_tokens": 4}),
    ("generate", {"prompt": "one two", "max_new_tokens": 4, "temperature": 1.0, "seed": 7}),
    ("overview", {"prompt": "the dog ran to the park"}),
    ("attention", {"prompt": "the dog ran to the park", "layer": 2, "head": 3}),
]


def test_concurrent_clients_get_what_they_get_alone(tmp_path):
    """16 clients, 40 requests (each of the 10 four times) in shuffled order over real HTTP, results never
    cached: any intervention leaking from one request into another would change an answer or break a run.
    Requests must really overlap for that to show, so the test also checks that many were in flight at once."""
    model = tiny_model("gemma2")
    # Every forward pass takes at least 10 ms, so requests overlap however fast this machine is.
    slow = model.blocks[0].register_forward_pre_hook(lambda *_: time.sleep(0.01))
    app = create_app(model, experiments_db=tmp_path / "e.sqlite", cache_results=False)
    before = fingerprint(model)
    with live_server(app) as url:
        with httpx.Client(base_url=url, timeout=MODEL_S) as alone:
            expected = [alone.post(f"/api/{path}", json=body).json() for path, body in REQUESTS]
        order = [i for i in range(len(REQUESTS)) for _ in range(4)]
        random.Random(0).shuffle(order)

        def call(i: int) -> tuple[int, int, dict | str, float, float]:
            path, body = REQUESTS[i]
            with httpx.Client(base_url=url, timeout=MODEL_S) as each:
                start = time.monotonic()
                response = each.post(f"/api/{path}", json=body)
                answer = response.json() if response.status_code == 200 else response.text
                return i, response.status_code, answer, start, time.monotonic()

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(call, order))
    errors = [(REQUESTS[i][0], status, answer) for i, status, answer, *_ in answers if status != 200]
    differ = [REQUESTS[i][0] for i, status, answer, *_ in answers if status == 200 and answer != expected[i]]
    assert not errors and not differ, (
        f"of {len(answers)} requests, {len(errors)} failed ({errors[:3]}) and {len(differ)} got another answer "
        f"than alone ({', '.join(sorted(set(differ)))})"
    )
    spans = [(start, end) for *_, start, end in answers]
    in_flight = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert in_flight >= 8, f"at most {in_flight} requests were in flight at once: the test did not test isolation"
    assert fingerprint(model) == before
    slow.remove()


def test_threads_sharing_the_model_are_serialised(tmp_path):
    """The same guarantee one level down: threads calling operations on one app while another thread keeps
    ablating. Without the model lock this fails at once (ablations leak into plain runs, or a run loses its
    cache to another's hooks); with it every plain answer equals the one computed alone."""
    model = tiny_model("gemma2")
    app = create_app(model, experiments_db=tmp_path / "e.sqlite", cache_results=False)
    svc, ops = app.state.glasslab, {op.name: op for op in OPERATIONS}
    plain = PredictOptions(prompt="the cat sat on the mat")
    ablation = AblateOptions(prompt="the cat sat on the mat", heads=[[0, 1], [1, 2]], target="mat")
    expected = execute(svc, ops["predict"], plain)
    handle = model.blocks[1].register_forward_pre_hook(lambda *_: time.sleep(0.001))
    stop = threading.Event()

    def ablate_until_stopped() -> None:
        while not stop.is_set():
            execute(svc, ops["ablate"], ablation)

    background = threading.Thread(target=ablate_until_stopped)
    background.start()
    try:
        answers = [execute(svc, ops["predict"], plain) for _ in range(40)]
    finally:
        stop.set()
        background.join()
        handle.remove()
    assert all(answer == expected for answer in answers)


@pytest.fixture
def slow_model():
    """A tiny model whose every block sleeps 20 ms, so a job runs long enough to cancel mid-way."""
    model = tiny_model("llama")
    handle = model.blocks[0].register_forward_pre_hook(lambda *_: time.sleep(0.02))
    yield model
    handle.remove()


def test_cancel_a_running_job_leaves_the_model_as_it_was(slow_model, tmp_path):
    c = client(slow_model, tmp_path, cache_results=False)
    before = fingerprint(slow_model)
    body = {"prompt": "the cat sat on the mat", "heads": [[0, 1], [2, 3]], "target": "mat"}
    reference = c.post("/api/ablate", json=body).json()
    params = {"clean": "the cat sat on the mat", "corrupted": "the dog ran to the park", "batch_size": 1}
    job = c.post("/api/jobs", json={"kind": "patch", "params": {**params, "target": "mat"}}).json()
    deadline = time.monotonic() + STEP_S
    while (state := c.get(f"/api/jobs/{job['id']}").json())["done"] < 5:
        assert state["status"] in ("queued", "running") and time.monotonic() < deadline, state
        time.sleep(0.01)
    assert state["status"] == "running"
    c.post(f"/api/jobs/{job['id']}/cancel")
    finished = wait_job(c, job["id"])
    assert finished["status"] == "cancelled" and finished["result"] is None
    assert fingerprint(slow_model) == before
    assert c.post("/api/ablate", json=body).json() == reference
    listed = c.get("/api/jobs").json()["jobs"]
    assert [j["status"] for j in listed if j["id"] == job["id"]] == ["cancelled"]


def test_a_job_completes_with_progress(slow_model, tmp_path):
    c = client(slow_model, tmp_path)
    params = {"prompt": "the cat sat on the mat", "target": "mat"}
    job = c.post("/api/jobs", json={"kind": "ablation-sweep", "params": params})
    assert job.status_code == 202 and job.json()["status"] in ("queued", "running")
    done = wait_job(c, job.json()["id"])
    assert done["status"] == "done" and done["done"] > 0 and done["error"] is None
    assert done["result"] == c.post("/api/ablation-sweep", json=params).json()


def test_failed_job_reports_one_line_and_leaves_the_model(tmp_path):
    model = tiny_model("llama")
    c = client(model, tmp_path)
    before = fingerprint(model)
    job = c.post("/api/jobs", json={"kind": "steer", "params": {"prompt": "the cat", "vector": "nope"}}).json()
    failed = wait_job(c, job["id"])
    assert failed["status"] == "failed" and "no saved steering vector" in failed["error"]
    assert "\n" not in failed["error"]
    assert fingerprint(model) == before


def test_busy_model_and_too_many_jobs(tmp_path):
    model = tiny_model("llama")
    c = client(model, tmp_path, wait_s=0.2)
    state = c.app.state.glasslab.state
    with state.hold("a test holding the model"):
        busy = c.post("/api/predict", json={"prompt": "the cat"})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
        assert "busy with a test holding the model" in busy.json()["error"]
        assert c.post("/api/tokens", json={"prompt": "the cat"}).json()["n_tokens"] == 3  # never waits
        queued = [c.post("/api/jobs", json={"kind": "predict", "params": {"prompt": "the cat"}}) for _ in range(8)]
        assert all(r.status_code == 202 for r in queued)
        refused = c.post("/api/jobs", json={"kind": "predict", "params": {"prompt": "the cat"}})
        assert refused.status_code == 429
        for r in queued[:4]:
            c.post(f"/api/jobs/{r.json()['id']}/cancel")
    outcomes = [wait_job(c, r.json()["id"])["status"] for r in queued]
    assert outcomes == ["cancelled"] * 4 + ["done"] * 4
    assert c.get("/api/jobs/unknown").status_code == 404
    assert c.post("/api/jobs/unknown/cancel").status_code == 404
