"""Composable, scoped edits of activations."""

from ..model.hooks import ApplyContext
from .splice import FeatureEdit, FeatureRecorder, SAESplice, SplicedDictionary
from .values import Ablate, Add, Clamp, Intervention, Patch, Replace

__all__ = [
    "Ablate",
    "Add",
    "ApplyContext",
    "Clamp",
    "FeatureEdit",
    "FeatureRecorder",
    "Intervention",
    "Patch",
    "Replace",
    "SAESplice",
    "SplicedDictionary",
]
