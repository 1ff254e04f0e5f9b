"""Input attribution: which prompt tokens made the model predict a token, by several methods, with
faithfulness scores that say which method to trust on this prompt (see docs/attribution.md)."""

from .baselines import BASELINES
from .compare import AttributionComparison, RankedMethod, compare_attributions
from .faithfulness import Faithfulness
from .registry import ALIASES, METHODS, attribute, faithfulness
from .result import InputAttribution
from .target import TARGET_KINDS

__all__ = [
    "ALIASES",
    "BASELINES",
    "METHODS",
    "TARGET_KINDS",
    "AttributionComparison",
    "Faithfulness",
    "InputAttribution",
    "RankedMethod",
    "attribute",
    "compare_attributions",
    "faithfulness",
]
