"""Data-parallel SAE training on a local two-worker Ray cluster: the same SAE and loss curve as training in
this process (same global batch and seed), a worker killed mid-training resumed from its checkpoint, and
one-line errors for a bad cluster address or a batch that does not divide among the workers."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("ray.train", reason="data-parallel training needs the ray extra: pip install 'glasslab[ray]'")

import ray

import glasslab as gl
from glasslab.activations import harvest
from glasslab.dictionaries.train import TrainConfig, TrainingCancelled, checkpoints_of, train_dictionary
from glasslab.errors import InputError
from glasslab.sae import load_sae_folder
from tests.tiny import WORDS, save_tiny

HOOK = "blocks.1.resid_post"
WORKERS = 2
# Two routes to the same step differ only in float rounding (the gradient is summed in another order): over
# 60 Adam steps the weights differed by 2e-7 of their scale here, so 1e-4 leaves room for other CPUs and BLAS
# builds. AuxK is a per-row mean like every other term (its dead set is the shared state): no extra allowance.
REL = 1e-4


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store shared with the Ray workers (their GLASSLAB_HOME is fixed when Ray starts)."""
    home = tmp_path_factory.mktemp("store")
    saved = {name: os.environ.get(name) for name in ("GLASSLAB_HOME", "GLASSLAB_PROGRESS")}
    os.environ.update(GLASSLAB_HOME=str(home), GLASSLAB_PROGRESS="0")
    yield home
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def cluster(store):
    ray.init(
        num_cpus=WORKERS,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"GLASSLAB_HOME": str(store), "GLASSLAB_PROGRESS": "0"}},
    )
    yield "local"  # connect() reuses this process's connection
    ray.shutdown()


@pytest.fixture(scope="module")
def model(store, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    save_tiny("gpt2", folder)
    return gl.load(folder)


def documents(n: int = 60) -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) for _ in range(n)]


def config(**overrides) -> TrainConfig:
    base = dict(
        hook=HOOK,
        expansion=4,
        k=4,
        tokens=60 * 64,
        batch_size=64,
        buffer_tokens=1500,
        seq_len=16,
        lr=3e-3,
        dead_after_tokens=640,  # short, so AuxK trains dead features within the run
    )
    return TrainConfig(**{**base, **overrides})


def train(model, out: Path, **options):
    return train_dictionary(model, config(), documents=documents(), out=out, **options)


def assert_same_sae(got: Path, want: Path) -> None:
    """Every weight within REL of its tensor's scale."""
    a, b = load_sae_folder(got), load_sae_folder(want)
    for (name, mine), (_, theirs) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        scale = max(1.0, float(theirs.abs().max()))
        torch.testing.assert_close(mine, theirs, rtol=0, atol=REL * scale, msg=lambda m, n=name: f"{n}: {m}")


def assert_same_curve(got: dict, want: dict) -> None:
    steps = [row["step"] for row in want["history"]]
    assert [row["step"] for row in got["history"]] == steps
    for key in ("loss", "fve", "l0"):
        mine = torch.tensor([row[key] for row in got["history"]], dtype=torch.float64)
        theirs = torch.tensor([row[key] for row in want["history"]], dtype=torch.float64)
        torch.testing.assert_close(mine, theirs, rtol=REL, atol=REL, msg=lambda m, k=key: f"{k}: {m}")


def test_an_unreachable_cluster_address_is_a_one_line_error(model, tmp_path):
    assert not ray.is_initialized()  # the module's cluster starts later; connect() would reuse it
    with pytest.raises(InputError, match="not HOST:PORT") as caught:
        train(model, tmp_path / "sae", cluster="definitely not an address", workers=WORKERS)
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match=r"nothing answers at '127\.0\.0\.1:1'"):
        train(model, tmp_path / "sae", cluster="127.0.0.1:1", workers=WORKERS)


def test_a_batch_that_does_not_divide_among_the_workers_is_refused(model, cluster, tmp_path):
    with pytest.raises(InputError, match="does not divide among 3 workers"):
        train(model, tmp_path / "sae", cluster=cluster, workers=3)


@pytest.fixture(scope="module")
def local_run(model, store):
    out = store.parent / "local-sae"
    train(model, out, name="local")
    return out


@pytest.fixture(scope="module")
def parallel_run(model, cluster, store):
    out = store.parent / "parallel-sae"
    train(model, out, name="parallel", cluster=cluster, workers=WORKERS)
    return out


def test_two_workers_train_the_same_sae_as_one_process(local_run, parallel_run):
    assert_same_sae(parallel_run, local_run)
    local = json.loads((local_run / "training.json").read_text())
    parallel = json.loads((parallel_run / "training.json").read_text())
    assert parallel["workers"] == WORKERS and "workers" not in local
    assert parallel["dead_fraction_training"] == pytest.approx(local["dead_fraction_training"], abs=0.02)
    assert any(row["dead"] > 0 for row in local["history"])  # AuxK had dead features to train
    assert_same_curve(parallel, local)


class KillRankOnce:
    """on_step for every worker: rank 0 logs its steps; rank 1 kills its own process at ``step``, once."""

    def __init__(self, folder: Path, step: int) -> None:
        self.marker, self.log, self.step = folder / "killed", folder / "steps", step

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        rank = ray.train.get_context().get_world_rank()
        if rank == 0:
            with self.log.open("a") as log:
                log.write(f"{step}\n")
        if rank == 1 and step == self.step and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_resumes_from_the_last_checkpoint(model, cluster, tmp_path, parallel_run):
    on_step = KillRankOnce(tmp_path, step=25)
    out = tmp_path / "sae"
    train(model, out, name="killed", cluster=cluster, workers=WORKERS, checkpoint_every=10, on_step=on_step)
    assert on_step.marker.exists()
    steps = [int(line) for line in on_step.log.read_text().split()]
    restart = next(i for i in range(1, len(steps)) if steps[i] <= steps[i - 1])
    assert steps[restart] == 21  # the step after the checkpoint at 20
    assert steps[-1] == config().steps
    assert_same_sae(out, parallel_run)
    assert_same_curve(
        json.loads((out / "training.json").read_text()), json.loads((parallel_run / "training.json").read_text())
    )


def test_training_in_this_process_never_imports_ray(tmp_path):
    script = f"""
import sys
from glasslab.dictionaries.train import TrainConfig, TrainingCancelled, checkpoints_of, train_dictionary
from tests.tiny import tiny_model
config = TrainConfig(**{dict(config(tokens=4 * 64).__dict__)!r})
train_dictionary(tiny_model("gpt2"), config, documents={documents(10)!r}, out={str(tmp_path / "sae")!r})
assert "ray" not in sys.modules, "local training imported ray"
"""
    env = {**os.environ, "GLASSLAB_HOME": str(tmp_path / "store"), "GLASSLAB_PROGRESS": "0"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


class CancelAt:
    """on_step for every worker: cancel at ``step`` (each rank sees the same steps, so all stop together)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        if step == self.step:
            raise KeyboardInterrupt


def test_a_cancelled_cluster_training_keeps_its_checkpoint_and_resumes(model, cluster, tmp_path, parallel_run):
    out = tmp_path / "sae"
    options = dict(name="cancelled", cluster=cluster, workers=WORKERS, checkpoint_every=1000)
    with pytest.raises(TrainingCancelled, match="stopped at step 15/60"):
        train(model, out, on_step=CancelAt(15), **options)
    assert not out.exists()
    assert checkpoints_of(model, "cancelled").latest()[0] == 15
    train(model, out, **options)
    assert_same_sae(out, parallel_run)


@pytest.mark.timeout(900)  # a training that cannot get the kept workers' CPUs would wait for ever
def test_a_training_after_a_harvest_on_the_cluster_gets_the_cpus_the_harvest_kept(model, cluster, store):
    corpus = store.parent / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": text}) + "\n" for text in documents()))
    url = harvest(model, HOOK, str(store.parent / "h"), corpus=str(corpus), tokens=600, seq_len=16, cluster=cluster).url
    settings = config(tokens=4 * 64, corpus=str(corpus), activations=url, harvest_tokens=600)
    run = train_dictionary(model, settings, out=store.parent / "from-harvest", cluster=cluster, workers=WORKERS)
    assert run.training["steps"] == 4 and run.training["tokens_harvested"] == 600


def refuse_on_rank_one(step: int, metrics: dict) -> None:
    """An error of glasslab's own on one rank only (ranks call on_step; this must pickle)."""
    from ray import train as ray_train

    if step == 3 and ray_train.get_context().get_world_rank() == 1:
        raise InputError("rank 1 refuses step 3")


@pytest.mark.timeout(600)  # without the abort, rank 0 would wait in its all-reduce for gloo's 30 minutes
def test_an_error_on_one_rank_stops_the_whole_training_at_once(model, cluster, tmp_path):
    with pytest.raises(InputError, match="rank 1 refuses step 3") as caught:
        train(model, tmp_path / "sae", cluster=cluster, workers=WORKERS, on_step=refuse_on_rank_one)
    assert "\n" not in str(caught.value)
