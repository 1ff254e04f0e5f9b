"""Helpers shared by the server tests: an app on a tiny model with its own store, a real uvicorn in a thread,
and fingerprints of a model's weights and hooks (to prove a request left the model as it was)."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Iterator

import torch
import uvicorn
from fastapi.testclient import TestClient

import glasslab as gl
from glasslab.app import create_app

from .deadlines import MODEL_S, STEP_S

BASE = "http://127.0.0.1"


def client(model: gl.Model, tmp_path, **options) -> TestClient:
    options.setdefault("experiments_db", tmp_path / "experiments.sqlite")
    return TestClient(create_app(model, **options), base_url=BASE)


def wait_job(c: TestClient, job_id: str, timeout: float = MODEL_S) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/api/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def fingerprint(model: gl.Model, weights: bool = True) -> tuple:
    """A hash of every weight (``weights=False``: none, for a real model where hashing takes seconds) plus
    every module's hook dicts and the open interventions."""
    digest = hashlib.sha256()
    for name, tensor in model.hf.state_dict().items() if weights else ():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    hooks = tuple(
        (name, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
        for name, m in model.hf.named_modules()
    )
    return digest.hexdigest(), hooks, tuple(model._active), model.hf.training


def free_port() -> int:
    """A port that was free a moment ago (another process may take it before it is bound again: prefer
    ``loopback_socket``, which holds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_socket() -> tuple[socket.socket, int]:
    """A listening-ready socket on a free loopback port, held from now on (no race for the port), and its port.
    Hand it to uvicorn (``Server.run(sockets=[sock])``, or its ``fd`` to a child process)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread on a free loopback port; yields its base URL."""
    sock, port = loopback_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STEP_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise AssertionError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
