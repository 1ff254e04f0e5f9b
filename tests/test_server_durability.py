"""Durability: a real uvicorn server process is killed with SIGKILL at random moments (twice) while clients save and
overwrite experiments; after each kill the SQLite file passes ``PRAGMA integrity_check`` and every save that
was answered holds exactly what was sent (an overwrite in flight may hold the old or the new version)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from .deadlines import MODEL_S, STEP_S
from .test_server_helpers import loopback_socket

ROOT = Path(__file__).resolve().parents[1]
SERVER = """
import socket, sys, uvicorn
sys.path.insert(0, {root!r})
from tests.tiny import tiny_model
from glasslab.app import create_app
app = create_app(tiny_model("gpt2"), experiments_db={db!r})
uvicorn.Server(uvicorn.Config(app, log_level="error")).run(sockets=[socket.socket(fileno={fd})])
"""


def start(db: Path, home: Path) -> tuple[subprocess.Popen, str]:
    """A server process on a socket this process bound and hands down (no other process can take the port)."""
    sock, port = loopback_socket()
    with sock:
        code = SERVER.format(root=str(ROOT), db=str(db), fd=sock.fileno())
        env = {**os.environ, "GLASSLAB_HOME": str(home)}
        process = subprocess.Popen(
            [sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL, pass_fds=[sock.fileno()]
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + MODEL_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/api/experiments", timeout=STEP_S).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the server did not start")


def payload(rng: random.Random, name: str) -> dict:
    return {
        "name": name,
        "prompt": f"prompt of {name}",
        "settings": {"position": rng.randrange(100)},
        "interventions": [{"ablate": [rng.randrange(3), rng.randrange(4)]}],
        "results": {"values": [rng.random() for _ in range(rng.randrange(100, 4000))]},
    }


def test_killed_server_keeps_every_answered_save(tmp_path):
    db = tmp_path / "experiments.sqlite"
    saved: dict[str, list[dict]] = {}  # id -> acceptable contents (the last answered, plus one in flight)
    lock = threading.Lock()
    rng = random.Random(1)
    for round_ in range(2):
        process, url = start(db, tmp_path / "store")
        # A restarted server reopens the file and serves every earlier answered save.
        listed = {e["id"] for e in httpx.get(f"{url}/api/experiments").json()["experiments"]}
        assert {key.split(":")[1] for key in saved} <= listed
        stop = threading.Event()

        def writer(worker: int, url=url, stop=stop, round_=round_) -> None:
            local = random.Random(worker * 100 + round_)
            with httpx.Client(base_url=url, timeout=MODEL_S) as c:
                for i in range(10_000):
                    body = payload(local, f"r{round_}-w{worker}-{i}")
                    with lock:
                        mine = [k for k in saved if k.startswith(f"{worker}:")]
                    overwrite = mine and local.random() < 0.3
                    try:
                        if overwrite:
                            key = local.choice(mine)
                            with lock:
                                saved[key].append(body)  # in flight: old or new may survive
                            response = c.put(f"/api/experiments/{key.split(':')[1]}", json=body)
                            assert response.status_code == 200, response.text
                            with lock:
                                saved[key] = [body]
                        else:
                            response = c.post("/api/experiments", json=body)
                            assert response.status_code == 201, response.text
                            with lock:
                                saved[f"{worker}:{response.json()['id']}"] = [body]
                    except httpx.TimeoutException:
                        raise  # a slow answer is no kill: fail rather than stop writing quietly
                    except httpx.TransportError:
                        return  # the server was killed
                    if stop.is_set():
                        return

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        # Kill at a random moment once a random number of this round's saves were answered.
        target, deadline = len(saved) + rng.randrange(5, 15), time.monotonic() + MODEL_S
        while len(saved) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        stop.set()
        for t in threads:
            t.join()
        check(db, saved)
    assert len(saved) >= 10


def check(db: Path, saved: dict[str, list[dict]]) -> None:
    connection = sqlite3.connect(db)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = connection.execute("SELECT id, name, prompt, settings, interventions, results FROM experiments")
        stored = {
            row[0]: {
                "name": row[1],
                "prompt": row[2],
                "settings": json.loads(row[3]),
                "interventions": json.loads(row[4]),
                "results": json.loads(row[5]),
            }
            for row in rows
        }
    finally:
        connection.close()
    for key, acceptable in saved.items():
        experiment_id = key.split(":")[1]
        assert experiment_id in stored, f"answered save {experiment_id} is missing"
        assert stored[experiment_id] in acceptable
