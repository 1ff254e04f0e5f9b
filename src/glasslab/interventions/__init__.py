"""Composable, scoped edits of activations."""

from ..model.hooks import ApplyContext
from .values import Ablate, Add, Clamp, Intervention, Patch, Replace

__all__ = ["Ablate", "Add", "ApplyContext", "Clamp", "Intervention", "Patch", "Replace"]
