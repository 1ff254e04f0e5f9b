"""What a workbench build on the Ray cluster checks before its harvest (no Ray needed: the cluster is never
reached, or is a stand-in that only counts CPUs):

- a harvest that would not fit in the store's free space is refused with one line that gives its size;
- a server started without --workers counts the cluster's workers before harvesting, and a batch that does
  not divide among them fails then, worded for the workbench (no --workers to change there);
- the harvest's size is rows x layers x (mlp.in, mlp_out) x d_model x 2 bytes (bfloat16), plus each row's ids;
- workers asked for without a cluster are a one-line error wherever a corpus job takes them;
- ``sae precompute`` and ``precompute_transcoders`` pass --worker-gpus on to their scans (a request never
  names it), and a scan reports each unit it finishes.
"""

from __future__ import annotations

import math

import pytest

from glasslab.app import transcoder_training
from glasslab.cluster import ClusterSpec, cluster_spec
from glasslab.dictionaries.activations import rows_per_sequence
from glasslab.dictionaries.transcoder_train import layer_means
from glasslab.errors import InputError
from glasslab.methods.features import labels
from glasslab.methods.features.scan import scan_features
from glasslab.methods.features.transcoder_features import precompute_transcoders
from glasslab.methods.lenses.tuned_lens import train_tuned_lens
from glasslab.methods.observe.neurons import neuron_profile
from glasslab.operations import OPERATIONS as DECLARED
from glasslab.operations.feature_files import precompute
from glasslab.operations.transcoders import TranscoderSizes, train_config
from glasslab.sae import save_sae

from .graph_sets import random_transcoder_set
from .ray_support import folder_model
from .test_sae_splice import random_sae
from .test_server_cluster_jobs import SMALL, submit
from .test_server_helpers import client, wait_job
from .tiny import tiny_model


class FakeRay:
    """What counting a cluster's workers asks of Ray."""

    @staticmethod
    def cluster_resources() -> dict[str, float]:
        return {"CPU": 2.0}


@pytest.fixture
def model(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path_factory.mktemp("home")))
    return folder_model(tmp_path_factory, "gpt2")


class Ctx:
    """What the size of a harvest reads of a request's context."""

    def __init__(self, model) -> None:
        self.model = model


def test_the_harvest_size_counts_every_layers_pair_in_bfloat16(model):
    config = train_config(**TranscoderSizes(**SMALL).model_dump())
    per_sequence = rows_per_sequence(model, config.seq_len)
    rows = math.ceil(2048 / per_sequence) * per_sequence  # whole sequences, as the harvest reads them
    expected = rows * (len(config.layers_of(model)) * 2 * model.d_model * 2 + 8)
    assert transcoder_training.harvest_bytes(Ctx(model), config) == expected


def test_a_harvest_larger_than_the_free_space_is_refused_with_its_size(model, tmp_path, monkeypatch):
    monkeypatch.setattr(transcoder_training, "free_bytes", lambda folder: 10**5)
    c = client(model, tmp_path, cluster=cluster_spec("127.0.0.1:1", 2))  # never reached: refused first
    response = submit(c, "transcoders-train", {**SMALL, "on_cluster": True})
    assert response.status_code == 400
    error = response.json()["error"]
    size = transcoder_training.harvest_bytes(Ctx(model), train_config(**TranscoderSizes(**SMALL).model_dump()))
    assert "\n" not in error and f"would take {size / 1e3:,.1f} kB in the store, which has 100.0 kB free" in error
    assert c.get("/api/jobs").json()["jobs"] == []


def test_workers_counted_on_the_cluster_are_checked_before_the_harvest(model, tmp_path, monkeypatch):
    monkeypatch.setattr(ClusterSpec, "connect", lambda self: FakeRay())

    def no_harvest(*args, **kwargs):
        raise AssertionError("the harvest started")

    monkeypatch.setattr(transcoder_training, "harvest", no_harvest)
    c = client(model, tmp_path, cluster=cluster_spec("127.0.0.1:1"))  # no --workers: one per CPU Ray has
    started = submit(c, "transcoders-train", {**SMALL, "batch_size": 127, "on_cluster": True})
    assert started.status_code == 202  # not connected yet when submitted: counted as the job starts
    job = wait_job(c, started.json()["id"])
    assert job["status"] == "failed"
    assert "does not divide among the cluster's 2 workers; use a multiple of 2" in job["error"]
    assert "--workers" not in job["error"]


def test_workers_without_a_cluster_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="give --cluster local, auto or an address"):
        cluster_spec(None, workers=2)
    with pytest.raises(InputError, match="give --cluster"):
        cluster_spec(None, worker_gpus=1.0)
    model = tiny_model("gpt2")
    with pytest.raises(InputError, match="give --cluster"):
        train_tuned_lens(model, workers=2, folder=tmp_path / "lens")
    with pytest.raises(InputError, match="give --cluster"):
        neuron_profile(model, 0, 0, worker_gpus=1.0)
    assert not (tmp_path / "lens").exists()


def test_a_sets_progress_is_the_mean_over_its_layers():
    metrics = {0: {"loss": 1.0, "fve": 0.5, "l0": 4.0, "dead": 0.0}, 3: {"loss": 3.0, "fve": 0.7, "l0": 8.0}}
    means = layer_means(metrics)
    assert set(means) == {"loss", "fve", "l0"}  # dead: not reported by every layer
    assert means == pytest.approx({"loss": 2.0, "fve": 0.6, "l0": 6.0})


class Scanned(Exception):
    """Raised by the stand-in scan once it has seen its options."""


def test_precomputes_pass_worker_gpus_to_their_scans(model, tmp_path, monkeypatch):
    seen: list[dict] = []

    def scan(*args, **options):
        seen.append(options)
        raise Scanned

    monkeypatch.setattr(labels, "scan_features", scan)
    save_sae(random_sae(model), tmp_path / "sae")
    with pytest.raises(Scanned):
        precompute(model, sae=str(tmp_path / "sae"), cluster="local", worker_gpus=0.5)
    transcoders = random_transcoder_set(model)
    transcoders.folder = tmp_path  # as if loaded from a folder
    with pytest.raises(Scanned):
        precompute_transcoders(model, transcoders, cluster="local", workers=2, worker_gpus=0.25)
    assert [options["worker_gpus"] for options in seen] == [0.5, 0.25]
    assert "worker_gpus" in DECLARED["sae-precompute"].local_only


def test_a_scan_reports_each_unit_it_finishes(model):
    done: list[int] = []
    scan = scan_features(model, random_sae(model), [0, 1], sequences=40, seq_len=8, batch_size=2, on_unit=done.append)
    assert sum(done) == scan.sequences and len(done) > 1  # units of 8 batches of 2 sequences: 16 + 16 + 8
