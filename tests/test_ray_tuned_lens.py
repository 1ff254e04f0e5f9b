"""The tuned lens's sums in units: units finishing in any order are added in unit order and equal one direct
pass, a run stopped with units out of order checkpoints only those in order and resumes to the one-go lens
(no Ray: the units run here, handed back reordered), and on a local Ray cluster of two workers the lens
(Python API and CLI) is the local one."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.lens  # registers the commands
from glasslab.cli.app import app
from glasslab.cluster import ClusterSpec
from glasslab.data import load_corpus, packed_sequences
from glasslab.errors import InputError
from glasslab.methods import corpus_sums
from glasslab.methods.lenses import tuned_lens_sums
from glasslab.methods.lenses.tuned_lens import train_tuned_lens
from tests.ray_support import folder_model, local_cluster
from tests.tiny import WORDS, tiny_model

SEQ, BATCH = 16, 2  # units of 8 batches on a cluster: 16 sequences
TOKENS = 40 * (SEQ - 1)  # 40 sequences: units of 16 + 16 + 8
FLOAT64 = 1e-12  # float64 rounding of a few hundred additions, relative to the sums' scale
FLOAT32 = 1e-5  # the translators are solved in float64 and stored in float32: a rounding of the sums moves them
# by far less than float32's resolution, relative to their scale


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    rng = random.Random(5)
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80))) for _ in range(120)]
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in lines))
    return str(path)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A store of this module's own (set before Ray starts, so its workers share it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(tmp_path_factory.mktemp("store")))
        yield


def assert_close(got: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    scale = float(expected.abs().max())
    assert scale > 0 and torch.allclose(got.double(), expected.double(), rtol=0, atol=rel * scale)


def sums(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "checkpoint" / "sums.safetensors"))


def state(folder) -> dict:
    return json.loads((folder / "checkpoint" / "state.json").read_text())


def handed_back(order: list[int], then_stop: bool = False):
    """A stand-in for ``run_units`` that runs the units here and hands back those in ``order`` (then stops
    with KeyboardInterrupt if ``then_stop``), as Ray workers finishing out of order would."""

    def run_units(job, units, *, model, spec, **options):
        assert spec.distributed  # the cluster's units: 8 batches each
        units = list(units)
        for index in order:
            yield units[index], job.run(model, units[index])
        if then_stop:
            raise KeyboardInterrupt

    return run_units


def direct_sums(model: gl.Model, corpus: str, sequences: int) -> tuple[torch.Tensor, torch.Tensor]:
    """X^T X and X^T Y of the first translator (the embeddings) over ``sequences`` sequences at once."""
    tokens = torch.stack(list(packed_sequences(model, load_corpus(corpus, split="train"), SEQ, sequences)))
    hooks = ["blocks.0.resid_pre", f"blocks.{model.n_layers - 1}.resid_post"]
    run = model.run(tokens, cache=hooks)
    x, y = (tuned_lens_sums._features(run, hook) for hook in hooks)
    return x.T @ x, x.T @ y[:, :-1]


def test_units_handed_back_in_any_order_add_up_to_one_pass(corpus, tmp_path, monkeypatch):
    model = tiny_model("llama")
    options = dict(tokens=TOKENS, seq_len=SEQ, batch_size=BATCH)
    local = train_tuned_lens(model, corpus, folder=tmp_path / "local", **options)
    monkeypatch.setattr(corpus_sums, "run_units", handed_back([2, 0, 1]))
    units = train_tuned_lens(model, corpus, folder=tmp_path / "units", cluster=ClusterSpec("local"), **options)
    assert units.tokens == local.tokens == TOKENS
    gram, cross = direct_sums(model, corpus, 40)
    for summed in (sums(tmp_path / "local"), sums(tmp_path / "units")):
        assert_close(summed["gram"][0], gram, FLOAT64)
        assert_close(summed["cross"][0], cross, FLOAT64)
    assert_close(units.weight, local.weight, FLOAT32)
    assert_close(units.bias, local.bias, FLOAT32)


def test_a_stopped_cluster_run_checkpoints_only_units_in_order_and_resumes(corpus, tmp_path, monkeypatch):
    model = tiny_model("llama")
    options = dict(tokens=TOKENS, seq_len=SEQ, batch_size=BATCH, checkpoint_every=1, cluster=ClusterSpec("local"))
    monkeypatch.setattr(corpus_sums, "run_units", handed_back([0, 1, 2]))
    whole = train_tuned_lens(model, corpus, folder=tmp_path / "whole", **options)
    monkeypatch.setattr(corpus_sums, "run_units", handed_back([2, 0], then_stop=True))
    with pytest.raises(KeyboardInterrupt):
        train_tuned_lens(model, corpus, folder=tmp_path / "stopped", **options)
    # unit 2 came back but waited for unit 1: only unit 0 is in the checkpoint
    assert state(tmp_path / "stopped")["sequences"] == 16 and not (tmp_path / "stopped" / "lens").exists()
    monkeypatch.setattr(corpus_sums, "run_units", handed_back([1, 0]))  # what is left: the last two units
    resumed = train_tuned_lens(model, corpus, folder=tmp_path / "stopped", **options)
    assert resumed.tokens == whole.tokens and state(tmp_path / "stopped")["sequences"] == 40
    for name, value in sums(tmp_path / "whole").items():
        assert_close(sums(tmp_path / "stopped")[name], value, FLOAT64)
    assert_close(resumed.weight, whole.weight, FLOAT32)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> gl.Model:
    return folder_model(tmp_path_factory)


@pytest.fixture(scope="module")
def cluster(home):
    with local_cluster() as spec:
        yield spec


def test_a_lens_fitted_on_ray_is_the_local_one(model, corpus, cluster, tmp_path):
    options = dict(tokens=TOKENS, seq_len=SEQ, batch_size=BATCH)
    local = train_tuned_lens(model, corpus, folder=tmp_path / "local", **options)
    distributed = train_tuned_lens(model, corpus, folder=tmp_path / "ray", cluster=cluster, workers=2, **options)
    assert distributed.tokens == local.tokens and distributed.corpus == local.corpus
    for name, value in sums(tmp_path / "local").items():
        assert_close(sums(tmp_path / "ray")[name], value, FLOAT64)
    assert_close(distributed.weight, local.weight, FLOAT32)
    assert_close(distributed.bias, local.bias, FLOAT32)


def test_cli_trains_on_the_cluster_and_refines_here(model, corpus, cluster):
    runner = CliRunner()
    sizes = ["--tokens", str(TOKENS), "--seq-len", str(SEQ), "--batch-size", str(BATCH), "--kl-steps", "1"]
    on_ray = ["--cluster", "local", "--workers", "2"]
    result = runner.invoke(
        app, ["tuned-lens", "train", "--corpus", corpus, *sizes, *on_ray, "-m", str(model.stored_at), "--json"]
    )
    assert result.exit_code == 0, (result.stderr, result.exception)
    trained = json.loads(result.stdout)
    assert trained["tokens"] == TOKENS and trained["kl_steps"] == 1


def test_a_model_not_loaded_from_a_folder_is_refused_on_a_cluster(corpus, cluster, tmp_path):
    with pytest.raises(InputError, match="not loaded from a folder"):
        train_tuned_lens(tiny_model("llama"), corpus, tokens=TOKENS, seq_len=SEQ, folder=tmp_path, cluster=cluster)
