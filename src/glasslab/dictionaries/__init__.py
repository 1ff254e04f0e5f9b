"""Dictionaries: sparse codes of a model's activations (SAEs and transcoders), as a layer of
their own: what a dictionary is, its architectures by name, and how any of them is trained.

Below the methods that view dictionaries (``glasslab.methods.features``); above the model, data, store
and interventions (the splice works on anything with encode/decode). Files, loading, labels and the
training job live here too; ``glasslab.sae`` is the public facade over all of it. A new kind is one
``Dictionary`` subclass passed to ``register``; configs naming its architecture then build it, and
``training.train_step`` trains it through its ``loss``.
"""

# Importing the architectures registers them (SAELens's names), before any config is read.
from .architectures import BatchTopKSAE, GatedSAE, JumpReLUSAE, StandardSAE, TopKSAE
from .base import Dictionary, LossSettings, StepInput, StepOutput
from .config import NORMALIZATIONS, DictionaryConfig
from .registry import architectures, dictionary_class, register, trainable_architectures, unregister
from .sae import SAE, geometric_median
from .transcoder import (
    JumpReLUSkipTranscoder,
    JumpReLUTranscoder,
    SkipTranscoder,
    TopKSkipTranscoder,
    TopKTranscoder,
    Transcoder,
)

__all__ = [
    "NORMALIZATIONS",
    "SAE",
    "BatchTopKSAE",
    "Dictionary",
    "DictionaryConfig",
    "GatedSAE",
    "JumpReLUSAE",
    "JumpReLUSkipTranscoder",
    "JumpReLUTranscoder",
    "LossSettings",
    "SkipTranscoder",
    "StandardSAE",
    "StepInput",
    "StepOutput",
    "TopKSAE",
    "TopKSkipTranscoder",
    "TopKTranscoder",
    "Transcoder",
    "architectures",
    "dictionary_class",
    "geometric_median",
    "register",
    "trainable_architectures",
    "unregister",
]
