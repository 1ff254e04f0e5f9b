"""Probing: linear probes at every layer with control tasks, probe directions as steering vectors, and
LEACE concept erasure (Alain & Bengio 2016; Hewitt & Liang 2019; Belrose et al. 2023)."""

from .activations import Activations, harvest, probe_hooks, tokenize_examples
from .datasets import BUILTIN, ProbeDataset, ProbeExample, load_probe_dataset, load_probe_file
from .erasure import ConceptEraser, erase, fit_eraser
from .leace import Leace, fit_leace
from .probe import probe, probe_vector, score_layers
from .result import Erasure, LayerProbe, Probing

__all__ = [
    "BUILTIN",
    "Activations",
    "ConceptEraser",
    "Erasure",
    "LayerProbe",
    "Leace",
    "ProbeDataset",
    "ProbeExample",
    "Probing",
    "erase",
    "fit_eraser",
    "fit_leace",
    "harvest",
    "load_probe_dataset",
    "load_probe_file",
    "probe",
    "probe_hooks",
    "probe_vector",
    "score_layers",
    "tokenize_examples",
]
