"""Knowledge editing: locate a fact with causal tracing, rewrite it with ROME or MEMIT, measure the edit.

- ``causal_trace`` (tracing.py): where restoring hidden states brings a corrupted fact back.
- ``Fact``, ``builtin_facts``, ``load_facts`` (facts.py): what to rewrite, with paraphrases and neighbours.
- ``key_statistics`` (stats.py): ``E[k k^T]`` of MLP keys over a corpus, cached in the store.
- ``rome`` / ``memit``: return an ``Edit`` (edit.py), applied only inside ``with edit.applied(model):``
  or between ``apply`` and ``undo``; ``save``/``load_edit`` keep it as a weight delta.
- ``evaluate_edit`` (evaluate.py): efficacy, generalisation, specificity and fluency, before and after.
"""

from .edit import Edit, load_edit
from .evaluate import EditEvaluation, evaluate_edit
from .facts import BUILTIN_FACTS, Fact, builtin_facts, load_facts
from .memit import memit
from .rome import rome
from .stats import KeyStats, key_statistics
from .tracing import CausalTrace, causal_trace

__all__ = [
    "BUILTIN_FACTS",
    "CausalTrace",
    "Edit",
    "EditEvaluation",
    "Fact",
    "KeyStats",
    "builtin_facts",
    "causal_trace",
    "evaluate_edit",
    "key_statistics",
    "load_edit",
    "load_facts",
    "memit",
    "rome",
]
