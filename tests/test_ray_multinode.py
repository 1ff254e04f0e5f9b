"""A Ray cluster of two real nodes on this machine (Ray's ``cluster_utils.Cluster``: a head and a worker
node, each its own raylet with one CPU), joined by its address as a user joins one. A harvest's shards and
a scan's units run on both nodes, the harvest written to an S3 bucket (what several nodes need: their
local folders differ), and both equal the local ones."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

import glasslab as gl
from glasslab.activations import harvest
from glasslab.cluster import UnitJob, cluster_spec, run_units
from glasslab.methods.features.scan import scan_features
from tests.ray_support import folder_model
from tests.s3_support import s3_bucket
from tests.test_ray_harvest import HOOKS, SIZES, assert_same_harvest, documents
from tests.test_ray_scan import SCAN, assert_same_scan
from tests.tiny import tiny_sae

ray = pytest.importorskip("ray", reason="the Ray tests need the ray extra (pip install 'glasslab[ray]')")


@pytest.fixture(scope="module")
def bucket():
    with s3_bucket("glasslab-cluster") as url:
        yield url


@pytest.fixture(scope="module")
def address(bucket):
    """The head's address. The nodes start after the bucket, so their workers hold the AWS settings that reach
    it, as the nodes of a real cluster are configured to reach its object storage."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> gl.Model:
    return folder_model(tmp_path_factory)


@dataclass(frozen=True)
class WhereAmI(UnitJob[int, str]):
    """A probe: the node a worker runs on."""

    def run(self, model: gl.Model | None, unit: int) -> str:
        return ray.get_runtime_context().get_node_id()


def worker_nodes(model: gl.Model, address: str) -> set[str]:
    """The nodes of the workers the last job on ``model`` ran on (the next job reuses them): 4 probes, two
    handed to each of the two workers at once."""
    spec = cluster_spec(address, workers=2)
    return {node for _, node in run_units(WhereAmI(), range(4), model=model, spec=spec, description="probe")}


def live_nodes() -> set[str]:
    return {node["NodeID"] for node in ray.nodes() if node["Alive"]}


def test_a_harvest_on_two_nodes_into_a_bucket_is_the_local_harvest(model, address, bucket, tmp_path):
    local = harvest(model, HOOKS, str(tmp_path / "h"), documents=documents(), **SIZES)
    done = harvest(model, HOOKS, f"{bucket}/run", documents=documents(), cluster=address, workers=2, **SIZES)
    assert done.url == f"{bucket}/run" and done.shards_run == 8 and done.manifest.complete
    assert_same_harvest(done, local)
    nodes = live_nodes()
    assert len(nodes) == 2 and worker_nodes(model, address) == nodes


def test_a_scan_on_two_nodes_is_the_local_scan(model, address, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": text}) + "\n" for text in documents(120)))
    sae = tiny_sae()
    local = scan_features(model, sae, corpus=str(corpus), **SCAN)
    distributed = scan_features(model, sae, corpus=str(corpus), cluster=address, workers=2, **SCAN)
    assert_same_scan(distributed, local)
