"""Load any causal LM, name its internals, run it with caches and interventions."""

from .architectures import ARCHITECTURES, Architecture
from .generation import Generation
from .loading import load
from .model import Model, Tokens
from .run import ActivationCache, Run

__all__ = ["ARCHITECTURES", "ActivationCache", "Architecture", "Generation", "Model", "Run", "Tokens", "load"]
