"""Harvests in object storage: a real S3 server on this machine (moto's) reached through s3fs, as a user's
``--out s3://bucket/run`` is. The same shards as a local folder, resumed after a stop by the command line,
a damaged shard refused, and an SAE trained from the bucket equal to one trained from the folder."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import glasslab as gl
from glasslab.activations import HarvestedRows, ShardFolder, harvest
from glasslab.activations.shards import MANIFEST
from glasslab.dictionaries.train import TrainConfig
from glasslab.methods.features.training import train_sae
from glasslab.sae import load_sae_folder
from tests.ray_support import folder_model
from tests.s3_support import s3_bucket
from tests.tiny import WORDS

s3fs = pytest.importorskip("s3fs", reason="the S3 tests need s3fs (the test extra)")
pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (the test extra)")

HOOKS = ["blocks.0.resid_post", "blocks.1.mlp.post"]
SIZES = {"tokens": 300, "seq_len": 16, "shard_tokens": 60}  # 5 shards of 4 sequences


@pytest.fixture(scope="module")
def bucket():
    with s3_bucket("glasslab-harvests") as url:
        yield url


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> gl.Model:
    return folder_model(tmp_path_factory)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    rng = random.Random(3)
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    texts = (" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for _ in range(60))
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    return str(path)


@pytest.fixture(scope="module")
def local_harvest(model, corpus, tmp_path_factory):
    return harvest(model, HOOKS, str(tmp_path_factory.mktemp("local") / "h"), corpus=corpus, **SIZES)


def shard_records(done) -> list[dict]:
    return [vars(shard) for shard in done.manifest.ordered()]


def test_a_harvest_in_a_bucket_holds_what_a_local_one_does(model, corpus, bucket, local_harvest):
    done = harvest(model, HOOKS, f"{bucket}/same", corpus=corpus, **SIZES)
    assert done.url == f"{bucket}/same" and done.manifest.complete and done.shards_run == 5
    assert shard_records(done) == shard_records(local_harvest)  # the same bytes: checksums included
    folder = ShardFolder(done.url)
    names = sorted(Path(path).name for path in folder.fs.ls(folder.root, detail=False))
    assert names == ["harvest.json"] + [f"shard-{i:06d}.safetensors" for i in range(5)]  # no partial file left
    for hook in HOOKS:
        assert torch.equal(
            torch.cat(list(HarvestedRows(done.url, hook).rows())),
            torch.cat(list(HarvestedRows(local_harvest.url, hook).rows())),
        )


def test_a_stopped_harvest_in_a_bucket_is_finished_by_the_same_command(model, corpus, bucket, local_harvest):
    out = f"{bucket}/resumed"

    class Stop(Exception):
        pass

    def stop_after_two(record) -> None:
        if record.index == 1:
            raise Stop

    with pytest.raises(Stop):
        harvest(model, HOOKS, out, corpus=corpus, on_shard=stop_after_two, **SIZES)
    partial = ShardFolder(out).manifest()
    assert partial is not None and not partial.complete and sorted(partial.shards) == [0, 1]
    with pytest.raises(gl.InputError, match="not finished"):
        HarvestedRows(out, HOOKS[0])
    # The command line, in a process of its own, finds the bucket through the same AWS settings.
    command = [str(Path(sys.executable).parent / "glasslab"), "harvest", ",".join(HOOKS), "--out", out]
    command += ["--model", model.stored_at, "--corpus", corpus, "--json"]
    command += [f"--{name.replace('_', '-')}={value}" for name, value in SIZES.items()]
    again = subprocess.run(command, env={**os.environ, "GLASSLAB_PROGRESS": "0"}, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    result = json.loads(again.stdout)
    assert result["shards_kept"] == 2 and result["shards_run"] == 3 and result["rows"] == 300
    manifest = ShardFolder(out).manifest()
    assert manifest is not None and manifest.complete
    assert [vars(s) for s in manifest.ordered()] == shard_records(local_harvest)


def test_a_damaged_shard_in_a_bucket_is_refused(model, corpus, bucket):
    done = harvest(model, HOOKS[0], f"{bucket}/damaged", corpus=corpus, **SIZES)
    folder = ShardFolder(done.url)
    shard = done.manifest.ordered()[2].file
    data = bytearray(folder.read(shard))
    data[-3] ^= 0xFF
    folder.fs.pipe_file(folder.path(shard), bytes(data))
    rows = HarvestedRows(done.url, HOOKS[0]).rows()
    assert next(rows).shape == (60, model.d_model)  # the shards before it still read
    with pytest.raises(gl.InputError, match="damaged"):
        list(rows)


def test_a_harvest_rewritten_by_another_machine_is_read_afresh(model, corpus, bucket):
    # A finished harvest lists its folder, and s3fs keeps that listing (sizes included) for later reads.
    first = harvest(model, HOOKS[0], f"{bucket}/rewritten", corpus=corpus, **SIZES)
    second = harvest(model, HOOKS[1], f"{bucket}/elsewhere", corpus=corpus, tokens=120, seq_len=16, shard_tokens=60)
    source, target = ShardFolder(second.url), ShardFolder(first.url)
    other_machine = s3fs.S3FileSystem(skip_instance_cache=True)  # its own client, as another process has
    for name in [shard.file for shard in second.manifest.ordered()] + [MANIFEST]:
        other_machine.pipe_file(target.path(name), source.read(name))
    rows = torch.cat(list(HarvestedRows(first.url, HOOKS[1]).rows()))
    assert torch.equal(rows, torch.cat(list(HarvestedRows(second.url, HOOKS[1]).rows())))


def test_a_store_nothing_answers_at_is_a_one_line_error(model, corpus, bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with pytest.raises(gl.InputError) as error:
            harvest(model, HOOKS[0], f"{bucket}/unreachable", corpus=corpus, **SIZES)
    finally:
        s3fs.S3FileSystem.clear_instance_cache()  # the next test's file system meets the bucket's server again
    assert "cannot read 's3://glasslab-harvests/unreachable'" in str(error.value) and "\n" not in str(error.value)


def test_an_sae_trained_from_a_bucket_is_the_one_trained_from_a_folder(
    model, corpus, bucket, local_harvest, tmp_path, monkeypatch
):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("GLASSLAB_PROGRESS", "0")
    stored = harvest(model, HOOKS, f"{bucket}/training", corpus=corpus, **SIZES)
    base = TrainConfig(
        hook=HOOKS[0], expansion=4, k=4, tokens=300, batch_size=60, buffer_tokens=120, seq_len=16, corpus=corpus
    )
    base = replace(base, harvest_tokens=300, model_batch=4)
    from_folder = train_sae(model, replace(base, activations=local_harvest.url), out=tmp_path / "a", evaluate_tokens=0)

    def not_run(*args, **kwargs):
        raise AssertionError("training from a harvest ran the model")

    monkeypatch.setattr(model, "run", not_run)
    from_bucket = train_sae(model, replace(base, activations=stored.url), out=tmp_path / "b", evaluate_tokens=0)
    assert from_bucket.training["tokens_harvested"] == from_folder.training["tokens_harvested"] == 300
    a, b = load_sae_folder(from_folder.path), load_sae_folder(from_bucket.path)
    for name, param in a.named_parameters():  # the same rows in the same order: the same steps
        torch.testing.assert_close(getattr(b, name), param, rtol=0, atol=1e-6 * float(param.abs().max()))
