"""Comparisons: two prompts, two models, a model before and after an intervention, heads with heads."""

from .alignment import Alignment, align
from .composition import Composition, head_composition
from .feature_influence import FeatureInfluence, feature_influence
from .models import GenerationComparison, ModelComparison, compare_generations, compare_models
from .prompts import PromptComparison, compare_prompts
from .side_effects import SideEffects, side_effects

__all__ = [
    "Alignment",
    "Composition",
    "FeatureInfluence",
    "GenerationComparison",
    "ModelComparison",
    "PromptComparison",
    "SideEffects",
    "align",
    "compare_generations",
    "compare_models",
    "compare_prompts",
    "feature_influence",
    "head_composition",
    "side_effects",
]
