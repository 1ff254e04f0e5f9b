"""A neuron's profile on Ray, and scan jobs ready for GPU workers: on a local Ray cluster of two workers the
profile (Python and CLI) is the local one; without Ray, a scan job carries its basis on the CPU, a worker's
copy goes to its model's device (here 'meta'), and the cluster options reach the job's spec, worker_gpus
included. Untested here (no GPU): a CUDA SAE copied to the CPU, and a basis placed on a CUDA worker."""

from __future__ import annotations

import json
import pickle
import random

import pytest
import torch
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.components  # registers its commands
from glasslab.cli.app import app
from glasslab.errors import InputError
from glasslab.methods.features import scan as scan_module
from glasslab.methods.features.basis import DictionaryBasis, NeuronBasis
from glasslab.methods.features.scan import scan_features
from glasslab.methods.features.scan_parts import ScanJob, _cpu_copy, place, portable
from glasslab.methods.observe.neurons import NeuronProfile, neuron_profile
from glasslab.operations import operation
from tests.ray_support import folder_model, local_cluster
from tests.tiny import WORDS, tiny_model, tiny_sae
from tests.tolerance import slack

# 40 sequences in units of 16 (8 batches of 2): the best contexts come from several units.
PROFILE = dict(sequences=40, seq_len=16, batch_size=2, k=10, window=3)
LAYER, NEURON = 1, 5


def documents(n: int = 120) -> list[str]:
    rng = random.Random(5)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for _ in range(n)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in documents()))
    return str(path)


def assert_same_profile(got: NeuronProfile, expected: NeuronProfile) -> None:
    """The same contexts (sequences, positions, windows) and counts; activations equal up to float rounding."""
    assert (got.corpus, got.sequences, got.positions) == (expected.corpus, expected.sequences, expected.positions)
    where = [(c.sequence, c.position, c.tokens, c.centre) for c in got.contexts]
    assert where == [(c.sequence, c.position, c.tokens, c.centre) for c in expected.contexts]
    values = torch.tensor([[c.activation, *c.activations] for c in expected.contexts])
    ours = torch.tensor([[c.activation, *c.activations] for c in got.contexts])
    assert torch.allclose(ours, values, atol=slack(values), rtol=0)
    for name in ("mean_activation", "max_activation"):
        assert getattr(got, name) == pytest.approx(getattr(expected, name), rel=1e-6, abs=1e-9), name
    assert got.promotes == expected.promotes and got.suppresses == expected.suppresses


class Shipped:
    """``run_units`` as Ray would run a job: the spec kept, the job pickled once and run on its copy."""

    def __init__(self) -> None:
        self.spec, self.job = None, None

    def __call__(self, job: ScanJob, units, *, model, spec, **_):
        self.spec, self.job = spec, job
        copy = pickle.loads(pickle.dumps(job))
        return ((unit, copy.run(model, unit)) for unit in units)


def test_a_scan_job_carries_its_basis_on_the_cpu_with_the_cluster_options(corpus, monkeypatch):
    model, sae = tiny_model("llama"), tiny_sae()
    options = dict(corpus=corpus, sequences=20, seq_len=16, batch_size=2, k=4, window=2, bins=4)
    local = scan_features(model, sae, **options)
    shipped = Shipped()
    monkeypatch.setattr(scan_module, "run_units", shipped)
    distributed = scan_features(model, sae, cluster="local", workers=2, worker_gpus=0.5, **options)
    spec, job = shipped.spec, shipped.job
    assert (spec.address, spec.workers, spec.gpus_per_worker) == ("local", 2, 0.5)
    assert job.shipped and job.basis.sae is sae  # already on the CPU: carried as it is, not copied
    assert torch.equal(distributed.top_sequence, local.top_sequence)
    assert torch.allclose(distributed.top_values, local.top_values, atol=slack(local.top_values), rtol=0)
    scan_features(model, sae, **options)
    assert not shipped.spec.distributed and not shipped.job.shipped  # a local scan leaves its basis alone


def test_a_neuron_profile_passes_its_cluster_options_to_the_scan(corpus, monkeypatch):
    model = tiny_model("llama")
    local = neuron_profile(model, LAYER, NEURON, corpus=corpus, **PROFILE)
    shipped = Shipped()
    monkeypatch.setattr(scan_module, "run_units", shipped)
    distributed = neuron_profile(
        model, LAYER, NEURON, corpus=corpus, cluster="auto", workers=3, worker_gpus=1.0, **PROFILE
    )
    assert (shipped.spec.address, shipped.spec.workers, shipped.spec.gpus_per_worker) == ("auto", 3, 1.0)
    assert_same_profile(distributed, local)


def test_a_workers_copy_of_the_basis_goes_to_its_models_device():
    sae = tiny_sae()
    job = ScanJob(portable(DictionaryBasis(sae)), (0, 1), 2, 1, 4, 1, 2, shipped=True)
    arrived = pickle.loads(pickle.dumps(job))
    place(arrived.basis, "meta")
    assert arrived.basis.sae.W_enc.device.type == "meta" and arrived.basis.sae.b_dec.device.type == "meta"
    assert sae.W_enc.device.type == "cpu"  # the driver's SAE stays where it was
    neurons = NeuronBasis(tiny_model("llama"), LAYER)
    assert portable(neurons) is neurons  # nothing on a device to move


def test_the_cpu_copy_takes_each_tensor_from_the_cpu_not_a_second_copy_on_its_device():
    sae = tiny_sae()
    sae.W_dec.requires_grad_(False)
    copied = _cpu_copy(sae)
    assert copied is not sae and copied.W_enc is not sae.W_enc
    for name, parameter in sae.named_parameters():
        twin = getattr(copied, name)
        assert isinstance(twin, torch.nn.Parameter) and twin.requires_grad == parameter.requires_grad, name
        assert twin.device.type == "cpu" and twin.data_ptr() == parameter.data_ptr(), name  # the memo's tensor


def test_the_neuron_operation_keeps_the_cluster_to_the_command_line():
    spec = operation("neuron")
    assert {"cluster", "workers", "worker_gpus"} <= spec.local_only
    assert {"cluster", "workers", "worker_gpus"} <= set(spec.options.model_fields)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> gl.Model:
    return folder_model(tmp_path_factory)


@pytest.fixture(scope="module")
def cluster():
    with local_cluster() as spec:
        yield spec


def test_a_neuron_profile_on_ray_is_the_local_one(model, corpus, cluster):
    local = neuron_profile(model, LAYER, NEURON, corpus=corpus, **PROFILE)
    distributed = neuron_profile(model, LAYER, NEURON, corpus=corpus, cluster=cluster, **PROFILE)
    assert len(local.contexts) == PROFILE["k"] and len({c.sequence // 16 for c in local.contexts}) > 1
    assert_same_profile(distributed, local)


def test_cli_profiles_a_neuron_on_the_cluster(model, corpus, cluster):
    sizes = [f"--{name.replace('_', '-')}={value}" for name, value in PROFILE.items() if name != "k"]
    args = ["neuron", str(LAYER), str(NEURON), "--corpus", corpus, *sizes, "-k", str(PROFILE["k"])]
    result = CliRunner().invoke(
        app, [*args, "--cluster", "local", "--workers", "2", "-m", str(model.stored_at), "--json"]
    )
    assert result.exit_code == 0, (result.stderr, result.exception)
    profile = json.loads(result.stdout)
    local = neuron_profile(model, LAYER, NEURON, corpus=corpus, **PROFILE)
    assert [(c["sequence"], c["position"]) for c in profile["contexts"]] == [
        (c.sequence, c.position) for c in local.contexts
    ]


def test_a_model_not_loaded_from_a_folder_is_refused_on_a_cluster(corpus, cluster):
    with pytest.raises(InputError, match="not loaded from a folder") as refused:
        neuron_profile(tiny_model("llama"), LAYER, NEURON, corpus=corpus, cluster=cluster, **PROFILE)
    assert "\n" not in str(refused.value)
