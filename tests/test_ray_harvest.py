"""Harvests on a local Ray cluster of two workers: the same shards as in this process, a worker killed
mid-harvest, and a harvest whose driver died finished by running the same command again."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import glasslab as gl
from glasslab.activations import HarvestedRows, ShardFolder, harvest, open_harvest
from glasslab.activations.shards import decode_shard
from tests.ray_support import folder_model, local_cluster
from tests.tiny import WORDS
from tests.tolerance import slack

HOOKS = ["blocks.0.resid_post", "blocks.1.mlp.post"]
SIZES = {"tokens": 360, "seq_len": 16, "shard_tokens": 45}  # 8 shards of 3 sequences


def documents(n: int = 60) -> list[str]:
    rng = random.Random(1)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for _ in range(n)]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> gl.Model:
    return folder_model(tmp_path_factory)


@pytest.fixture(scope="module")
def cluster():
    with local_cluster() as spec:
        yield spec


@pytest.fixture(scope="module")
def local_harvest(model, tmp_path_factory):
    return harvest(model, HOOKS, str(tmp_path_factory.mktemp("local") / "h"), documents=documents(), **SIZES)


def assert_same_harvest(got, expected) -> None:
    """The same shards (sequences, documents, tokens) and rows equal up to float rounding."""
    strip = [{k: v for k, v in vars(s).items() if k not in ("sha256", "bytes")} for s in got.manifest.ordered()]
    assert strip == [
        {k: v for k, v in vars(s).items() if k not in ("sha256", "bytes")} for s in expected.manifest.ordered()
    ]
    for ours, theirs in zip(got.manifest.ordered(), expected.manifest.ordered(), strict=True):
        a, b = decode_shard(ShardFolder(got.url), ours), decode_shard(ShardFolder(expected.url), theirs)
        assert torch.equal(a["tokens"], b["tokens"]) and torch.equal(a["documents"], b["documents"])
    for hook in HOOKS:
        rows = torch.cat(list(HarvestedRows(got.url, hook).rows()))
        reference = torch.cat(list(HarvestedRows(expected.url, hook).rows()))
        assert rows.shape == reference.shape and torch.allclose(rows, reference, atol=slack(reference), rtol=0)


def test_a_distributed_harvest_writes_what_the_local_one_writes(model, cluster, local_harvest, tmp_path):
    done = harvest(model, HOOKS, str(tmp_path / "h"), documents=documents(), cluster=cluster, **SIZES)
    assert done.shards_run == len(done.manifest.shards) == 8 and done.manifest.complete
    assert_same_harvest(done, local_harvest)


def ray_workers() -> list[int]:
    """The PIDs of this test's harvest workers: processes Ray names after the actor's class that descend from
    this process (another run's workers on the same machine are left alone)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            named = entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::_Worker")
            if named and descends_from_us(int(entry.name)):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def descends_from_us(pid: int) -> bool:
    while pid > 1:
        if pid == os.getpid():
            return True
        pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    return False


def test_a_worker_killed_mid_harvest_leaves_no_shard_missing_or_twice(model, cluster, local_harvest, tmp_path):
    killed: list[int] = []

    def kill_a_worker(record) -> None:
        if not killed:
            victims = ray_workers()
            assert victims, "no Ray worker process found to kill"
            os.kill(victims[0], signal.SIGKILL)
            killed.append(victims[0])

    out = tmp_path / "h"
    done = harvest(model, HOOKS, str(out), documents=documents(), cluster=cluster, on_shard=kill_a_worker, **SIZES)
    assert killed and killed[0] not in ray_workers()
    assert sorted(done.manifest.shards) == list(range(8))
    assert sorted(p.name for p in out.iterdir()) == ["harvest.json"] + [f"shard-{i:06d}.safetensors" for i in range(8)]
    assert_same_harvest(done, local_harvest)


def test_a_harvest_whose_driver_died_finishes_with_the_same_command(model, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": text}) + "\n" for text in documents()))
    out = tmp_path / "h"
    folder = model.stored_at
    dies = (
        "import os, signal, glasslab as gl\n"
        "from glasslab.activations import harvest\n"
        "def die(record):\n"
        "    if record.index == 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"harvest(gl.load({str(folder)!r}), {HOOKS!r}, {str(out)!r}, corpus={str(corpus)!r},\n"
        f"        on_shard=die, **{SIZES!r})\n"
    )
    env = {**os.environ, "GLASSLAB_PROGRESS": "0"}
    died = subprocess.run([sys.executable, "-c", dies], env=env, capture_output=True, timeout=300)
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()[-2000:]
    partial = json.loads((out / "harvest.json").read_text())
    assert not partial["complete"] and [s["index"] for s in partial["shards"]] == [0, 1, 2]
    command = [str(Path(sys.executable).parent / "glasslab"), "harvest", ",".join(HOOKS), "--out", str(out)]
    command += ["--model", str(folder), "--corpus", str(corpus), "--json"]
    command += [f"--{k.replace('_', '-')}={v}" for k, v in SIZES.items()]
    again = subprocess.run(command, env=env, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    result = json.loads(again.stdout)
    assert result["shards_kept"] == 3 and result["shards_run"] == 5 and result["rows"] == 360
    whole = harvest(model, HOOKS, str(tmp_path / "whole"), corpus=str(corpus), **SIZES)
    assert_same_harvest(SimpleNamespace(url=str(out), manifest=open_harvest(str(out))[1]), whole)


def test_a_worker_that_cannot_load_the_model_is_a_one_line_error(model, cluster, tmp_path_factory, tmp_path):
    moved = folder_model(tmp_path_factory, "gpt2")
    Path(moved.stored_at).rename(tmp_path / "elsewhere")  # the workers will not find it
    with pytest.raises(gl.InputError) as error:
        harvest(moved, HOOKS[0], str(tmp_path / "h"), documents=documents(), cluster=cluster, **SIZES)
    assert "is not on this worker" in str(error.value) and "\n" not in str(error.value)
    again = harvest(model, HOOKS[0], str(tmp_path / "again"), documents=documents(), cluster=cluster, **SIZES)
    assert again.manifest.complete  # the failed workers were not kept for the next job
