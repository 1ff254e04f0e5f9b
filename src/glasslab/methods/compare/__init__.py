"""Comparisons: two prompts, two models, a model before and after an intervention, heads with heads."""

from .alignment import Alignment, align
from .composition import Composition, head_composition
from .models import GenerationComparison, ModelComparison, compare_generations, compare_models
from .prompts import PromptComparison, compare_prompts
from .side_effects import SideEffects, side_effects

__all__ = [
    "Alignment",
    "Composition",
    "GenerationComparison",
    "ModelComparison",
    "PromptComparison",
    "SideEffects",
    "align",
    "compare_generations",
    "compare_models",
    "compare_prompts",
    "head_composition",
    "side_effects",
]
