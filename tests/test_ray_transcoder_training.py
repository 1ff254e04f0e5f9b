"""Data-parallel transcoder-set training on a local two-worker Ray cluster: the same set and loss curves as
training in this process from the same harvest (same global batch and seed), a cancelled cluster training
resumed from its checkpoint, and one-line errors for the combinations that cannot work."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("ray.train", reason="data-parallel training needs the ray extra: pip install 'glasslab[ray]'")

import ray

import glasslab as gl
import glasslab.cli.main  # registers every command
from glasslab.activations import harvest
from glasslab.cli.app import app
from glasslab.dictionaries.train import TrainingCancelled
from glasslab.dictionaries.transcoder_set import TranscoderSet
from glasslab.dictionaries.transcoder_train import TranscoderTrainConfig, train_transcoders, transcoder_checkpoints
from glasslab.errors import InputError
from glasslab.operations import OPERATIONS
from tests.tiny import WORDS, save_tiny

WORKERS = 2
LAYERS = (0, 1)
# As for SAEs (tests/test_ray_training.py): the two routes differ only in the order the gradient is summed,
# so the weights agree to float rounding over 40 Adam steps; 1e-4 of each tensor's scale leaves room for
# other CPUs and BLAS builds.
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
def model_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    save_tiny("gpt2", folder)
    return folder


@pytest.fixture(scope="module")
def model(store, model_folder):
    return gl.load(model_folder)


@pytest.fixture(scope="module")
def corpus(store) -> str:
    rng = random.Random(0)
    path = store.parent / "corpus.jsonl"
    lines = [json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))}) for _ in range(60)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def harvested(model, corpus, store) -> str:
    hooks = [hook for layer in LAYERS for hook in (f"blocks.{layer}.mlp.in", f"blocks.{layer}.mlp_out")]
    return harvest(model, hooks, str(store.parent / "harvest"), corpus=corpus, tokens=1200, seq_len=16).url


def config(harvested: str, corpus: str, **overrides) -> TranscoderTrainConfig:
    base = dict(
        architecture="topk_skip_transcoder",
        expansion=2,
        k=4,
        tokens=40 * 64,
        batch_size=64,
        buffer_tokens=1000,
        seq_len=16,
        lr=3e-3,
        dead_after_tokens=640,  # short, so AuxK trains dead features within the run
        corpus=corpus,
        harvest_tokens=1200,
        layers=LAYERS,
        activations=harvested,
    )
    return TranscoderTrainConfig(**{**base, **overrides})


def assert_same_set(got: Path, want: Path, model) -> None:
    """Every layer's every weight within REL of its tensor's scale."""
    a, b = TranscoderSet.load(got, model), TranscoderSet.load(want, model)
    assert sorted(a.layers) == sorted(b.layers) == list(LAYERS)
    for layer in LAYERS:
        for name, theirs in b[layer].named_parameters():
            scale = max(1.0, float(theirs.abs().max()))
            mine = getattr(a[layer], name)
            torch.testing.assert_close(mine, theirs, rtol=0, atol=REL * scale, msg=lambda m, n=name: f"{n}: {m}")


def assert_same_final_metrics(got: dict, want: dict) -> None:
    for layer in map(str, LAYERS):
        mine, theirs = got["per_layer"][layer], want["per_layer"][layer]
        assert mine["final"]["step"] == theirs["final"]["step"]
        for key in ("loss", "fve", "l0"):
            assert mine["final"][key] == pytest.approx(theirs["final"][key], rel=REL, abs=REL), (layer, key)


@pytest.fixture(scope="module")
def local_run(model, harvested, corpus, store):
    return train_transcoders(model, config(harvested, corpus), name="local", out=store.parent / "local-set")


@pytest.fixture(scope="module")
def parallel_run(model, harvested, corpus, cluster, store):
    out = store.parent / "parallel-set"
    return train_transcoders(
        model, config(harvested, corpus), name="parallel", out=out, cluster=cluster, workers=WORKERS
    )


def test_two_workers_train_the_same_set_as_one_process(model, local_run, parallel_run):
    assert_same_set(parallel_run.path, local_run.path, model)
    assert parallel_run.training["workers"] == WORKERS and "workers" not in local_run.training
    assert parallel_run.training["steps"] == local_run.training["steps"] == 40
    assert parallel_run.training["tokens_harvested"] == local_run.training["tokens_harvested"]
    assert_same_final_metrics(parallel_run.training, local_run.training)


class CancelAt:
    """on_step for every worker: cancel at ``step`` (each rank sees the same steps, so all stop together)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, step: int, metrics: dict) -> None:
        if step == self.step:
            raise KeyboardInterrupt


def test_a_cancelled_cluster_training_keeps_its_checkpoint_and_resumes(
    model, harvested, corpus, cluster, tmp_path, parallel_run
):
    out = tmp_path / "set"
    options = dict(name="cancelled", out=out, cluster=cluster, workers=WORKERS, checkpoint_every=1000)
    with pytest.raises(TrainingCancelled, match="stopped at step 15/40"):
        train_transcoders(model, config(harvested, corpus), on_step=CancelAt(15), **options)
    assert not out.exists()
    assert transcoder_checkpoints(model, "cancelled").latest()[0] == 15
    run = train_transcoders(model, config(harvested, corpus), **options)
    assert_same_set(run.path, parallel_run.path, model)


def test_bad_combinations_are_one_line_errors(model, harvested, corpus, cluster, tmp_path):
    cases = [
        (dict(cluster=cluster, workers=WORKERS), dict(activations=None), "reads a harvest: give --activations"),
        (dict(workers=WORKERS), {}, "size a Ray cluster: give --cluster"),
        (dict(worker_gpus=1.0), {}, "size a Ray cluster: give --cluster"),
        (dict(cluster=cluster, workers=3), {}, "does not divide among 3 workers"),
    ]
    for options, settings, message in cases:
        with pytest.raises(InputError, match=message) as caught:
            train_transcoders(model, config(harvested, corpus, **settings), out=tmp_path / "x", **options)
        assert "\n" not in str(caught.value)


def test_the_command_line_refuses_a_cluster_without_a_harvest(model_folder, store):
    env = {"GLASSLAB_PROGRESS": "0", "GLASSLAB_HOME": str(store)}
    args = ["transcoders", "train", "--cluster", "local", "--workers", "2", "--seq-len", "16"]
    args += ["--model", str(model_folder)]
    done = CliRunner().invoke(app, args, env=env)
    assert done.exit_code == 2, done.output
    assert "give --activations" in done.stderr and "Traceback" not in done.output
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_request_cannot_name_a_cluster():
    local_only = OPERATIONS["transcoders-train"].local_only
    assert {"cluster", "workers", "worker_gpus"} <= local_only
