"""One MLP neuron: its top-activating contexts in a corpus and the tokens its output promotes and suppresses."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ..methods.observe.neurons import NeuronProfile, neuron_profile
from .options import MAX_BATCH, MAX_K, Cli, Index, Options
from .scale import ClusterAddress, WorkerGpus, Workers
from .spec import OperationSpec


class NeuronOptions(Options):
    layer: Annotated[Index, Field(description="The neuron's layer."), Cli(argument=True)]
    neuron: Annotated[Index, Field(description="The neuron's index in the layer's MLP."), Cli(argument=True)]
    corpus: Annotated[
        str, Field(max_length=1000, description="'builtin', a .txt/.jsonl file or folder, or hf:NAME.")
    ] = "builtin"
    sequences: Annotated[int, Field(ge=1, le=4096, description="How many sequences to scan.")] = 64
    seq_len: Annotated[int, Field(ge=2, le=2048, description="Tokens per sequence.")] = 64
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH, description="Sequences per forward pass.")] = 16
    k: Annotated[int, Field(ge=1, le=MAX_K, description="How many contexts to keep."), Cli(("-k", "--top-k"))] = 10
    window: Annotated[int, Field(ge=0, le=64, description="Tokens shown either side of the max token.")] = 8
    cluster: ClusterAddress = None
    workers: Workers = None
    worker_gpus: WorkerGpus = 0.0


OPERATIONS = [
    OperationSpec(
        "neuron",
        NeuronOptions,
        neuron_profile,
        NeuronProfile,
        "One neuron: its top-activating contexts in a corpus and the tokens its output promotes and suppresses.",
        "analysis",
        # A corpus file or folder is on this machine (hf:NAME downloads): a request scans the built-in corpus.
        # A request never names a cluster or its workers: only the operator decides where the server runs work.
        local_only=frozenset({"corpus", "cluster", "workers", "worker_gpus"}),
        python_only=frozenset({"top_tokens", "include_bos"}),
        long=True,
    ),
]
