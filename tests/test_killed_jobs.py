"""Work killed with SIGKILL leaves nothing that lasts: a workbench SAE training whose server dies during the
save, or after it and before the SAE is moved into place, leaves a hidden staging folder; the next training
in that folder removes it (its process is dead), is not refused by it, and lists exactly one SAE. A staging
folder of a process that still runs is kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glasslab.sae import load_sae
from glasslab.store import staging_folder

from .deadlines import MODEL_S
from .test_server_helpers import client, loopback_socket, wait_job
from .tiny import tiny_model

ROOT = Path(__file__).resolve().parents[1]
BODY = {"layer": 1, "expansion": 4, "k": 4, "tokens": 256 * 4, "harvest_tokens": 1024, "batch_size": 256}
NAME = "blocks.1.resid_post-topk-128-k4-app"
# The server of the first training: the real app, with one function wrapped to kill the process at a chosen
# moment of the save (the wrapped function still runs, so the files are really written first).
SERVER = """
import os, signal, socket, sys, uvicorn
sys.path.insert(0, {root!r})
from tests.tiny import tiny_model
from glasslab.app import create_app
import glasslab.dictionaries.files as files, glasslab.dictionaries.train as train

def dying(real):
    def wrapped(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    return wrapped

if {moment!r} == "during-save":
    files.save_file = dying(files.save_file)  # the first weights file is written, the rest never is
else:
    train.write_sae_files = dying(train.write_sae_files)  # the SAE is whole but never renamed into place
app = create_app(tiny_model("llama"), experiments_db={db!r})
uvicorn.Server(uvicorn.Config(app, log_level="error")).run(sockets=[socket.socket(fileno={fd})])
"""


def hidden(home: Path) -> list[str]:
    return sorted(p.name for p in home.glob("saes/*/.*"))


def train_and_die(tmp_path: Path, home: Path, moment: str) -> None:
    import httpx

    sock, port = loopback_socket()
    with sock:
        code = SERVER.format(root=str(ROOT), db=str(tmp_path / "first.sqlite"), fd=sock.fileno(), moment=moment)
        env = {**os.environ, "GLASSLAB_HOME": str(home)}
        process = subprocess.Popen(
            [sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL, pass_fds=[sock.fileno()]
        )
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + MODEL_S
        while True:  # until the server answers
            try:
                started = httpx.post(f"{url}/api/jobs", json={"kind": "sae-train", "params": BODY}, timeout=MODEL_S)
                break
            except httpx.ConnectError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the server did not answer") from None
                time.sleep(0.1)
        assert started.status_code == 202, started.text
        assert process.wait(timeout=MODEL_S) == -signal.SIGKILL
    finally:
        process.kill()


@pytest.mark.parametrize("moment", ["during-save", "before-rename"])
def test_a_training_killed_while_saving_leaves_nothing_after_the_next(tmp_path, monkeypatch, moment):
    home = tmp_path / "home"
    train_and_die(tmp_path, home, moment)
    left = hidden(home)
    assert left and all(name.startswith(".partial-") for name in left), left  # the kill left its staging

    monkeypatch.setenv("GLASSLAB_HOME", str(home))
    model = tiny_model("llama")
    c = client(model, tmp_path)
    assert c.get("/api/saes").json()["saes"] == []  # a leftover is never listed
    job = wait_job(c, c.post("/api/jobs", json={"kind": "sae-train", "params": BODY}).json()["id"], timeout=MODEL_S)
    assert job["status"] == "done", job["error"]
    assert hidden(home) == []
    assert [s["name"] for s in c.get("/api/saes").json()["saes"]] == [f"store:{NAME}"]
    assert load_sae(f"store:{NAME}", model).cfg.d_sae == 128


def test_staging_keeps_live_work_and_removes_the_dead(tmp_path):
    folder = tmp_path / "saes" / "key"
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    leftovers = [f".partial-a-{dead_pid}-0123abcd", ".partial-no-pid", ".training-b-4567ef01"]
    live = f".partial-c-{os.getpid()}-89abcdef"
    for name in [*leftovers, live, "kept-sae"]:
        (folder / name).mkdir()
        (folder / name / "sae_weights.safetensors").write_bytes(b"x")
    fresh = staging_folder(folder / "new-sae")
    assert fresh.parent == folder and fresh.name.startswith(f".partial-new-sae-{os.getpid()}-")
    assert not fresh.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted([live, "kept-sae"])
