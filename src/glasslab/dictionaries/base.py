"""The ``Dictionary``: a module that encodes an activation into sparse features and decodes them back,
and that knows how to train itself.

A kind of dictionary (an SAE architecture, a transcoder) is one subclass that declares its
parameters' shapes, its encode/decode and, if glasslab trains it, its ``loss`` and training hooks; the
trainer (``training.py``) only calls these, so it never asks which kind it is training. Registering the
subclass (``registry.register``) makes configs with its architecture name build it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import torch
from torch import nn

from ..errors import InputError
from .config import DictionaryConfig
from .memory import check_memory
from .registry import dictionary_class


class LossSettings(Protocol):
    """The training hyper-parameters losses read (``glasslab.dictionaries.train.TrainConfig`` has them all)."""

    aux_k: int
    aux_coefficient: float
    l1_coefficient: float
    l0_coefficient: float
    bandwidth: float
    init_threshold: float


def _zero() -> torch.Tensor:
    return torch.zeros(())


@dataclass(frozen=True)
class StepInput:
    """One normalised training batch, and what the trainer knows about the features so far."""

    x: torch.Tensor  # [batch, d_in] the dictionary's input
    dead: torch.Tensor  # [d_sae] bool: silent for too long (auxiliary losses revive them)
    settings: LossSettings
    target: torch.Tensor | None = None  # [batch, d_out] what to rebuild; None: x itself (autoencoders)

    @property
    def wanted(self) -> torch.Tensor:
        return self.x if self.target is None else self.target


@dataclass
class StepOutput:
    """One batch's loss, in parts, and what the trainer records: the error and which features fired."""

    reconstruction: torch.Tensor  # squared error summed over the output width, averaged over tokens
    error: torch.Tensor  # [batch, d_out] wanted - reconstruction, detached
    fired: torch.Tensor  # [d_sae] how many tokens each feature was active on
    l0: float  # active features per token
    sparsity: torch.Tensor = field(default_factory=_zero)  # the sparsity penalty (L1, L0), weighted
    auxiliary: torch.Tensor = field(default_factory=_zero)  # e.g. AuxK's dead-feature loss, weighted

    @property
    def loss(self) -> torch.Tensor:
        """What the optimiser minimises."""
        return self.reconstruction + self.sparsity + self.auxiliary


class Dictionary(nn.Module):
    """Parameters named and shaped by the subclass, allocated as zeros and frozen (the trainer unfreezes
    its own copy). Subclasses must not override ``__init__``: declare shapes in ``declared_shapes``."""

    architecture: ClassVar[str] = ""  # the registry key (SAELens's name for SAE architectures)
    trainable: ClassVar[bool] = False  # True where ``loss`` and the training hooks are implemented
    uses_k: ClassVar[bool] = False  # the config's k (active features per token) is part of the kind
    optional_parameters: ClassVar[tuple[str, ...]] = ()  # [d_sae] parameters some files carry, others not

    def __init__(
        self,
        cfg: DictionaryConfig,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        *,
        optional: Iterable[str] = (),
    ) -> None:
        """``optional``: names (of ``optional_parameters``) the weights to be loaded carry, e.g. a learned
        BatchTopK threshold; others are left out."""
        super().__init__()
        if cfg.architecture != self.architecture:
            raise InputError(f"a {type(self).__name__} is a '{self.architecture}' dictionary, not '{cfg.architecture}'")
        self.cfg = cfg
        shape = self.shapes_for(cfg, optional)
        check_memory(shape, dtype, device, f"an SAE with d_in={cfg.d_in}, d_sae={cfg.d_sae}")
        for name, size in shape.items():
            self.register_parameter(name, nn.Parameter(torch.zeros(size, dtype=dtype, device=device)))
        self.requires_grad_(False)

    # -- what a kind declares ------------------------------------------------------------------------
    @classmethod
    def declared_shapes(cls, cfg: DictionaryConfig) -> dict[str, tuple[int, ...]]:
        """This kind's parameters and their shapes, optional ones left out."""
        raise NotImplementedError

    @classmethod
    def check_config(cls, cfg: DictionaryConfig) -> None:
        """Refuse, in one line, a config this kind cannot use (called when the config is built)."""

    @classmethod
    def check_training(cls, cfg: DictionaryConfig) -> None:
        """Refuse, in one line, a config this kind cannot be trained with (called before training)."""

    @classmethod
    def shapes_for(cls, cfg: DictionaryConfig, optional: Iterable[str] = ()) -> dict[str, tuple[int, ...]]:
        """Each parameter's shape for ``cfg``'s architecture, known before anything is allocated (loaders
        check files against it); ``optional`` names optional parameters to include."""
        kind = dictionary_class(cfg.architecture)
        shape = kind.declared_shapes(cfg)
        wanted = set(optional)
        shape.update({name: (cfg.d_sae,) for name in kind.optional_parameters if name in wanted})
        return shape

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(param.shape) for name, param in self.named_parameters()}

    @property
    def d_in(self) -> int:
        """The input width."""
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        """The number of features."""
        return self.cfg.d_sae

    # -- the formulas --------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_in] -> [..., d_sae] feature activations (non-negative, mostly zero)."""
        raise NotImplementedError

    def decode(self, features: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        """[..., d_sae] features -> [..., d_out]; ``like`` is the input, for input-dependent normalisations."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x`` (a transcoder's: its prediction of the output)."""
        return self.decode(self.encode(x), like=x)

    # -- training: the trainer calls these, in this order --------------------------------------------
    def start_training(self, generator: torch.Generator, settings: LossSettings) -> None:
        """Draw the initial parameters from ``generator`` and unfreeze them."""
        raise InputError(f"glasslab cannot train '{self.architecture}' dictionaries")

    def fit_to_sample(self, sample: torch.Tensor, target: torch.Tensor | None = None) -> None:
        """Adjust the initial parameters to a normalised sample of inputs (e.g. a bias at their median) and,
        for a transcoder, of the outputs it predicts (``target``; None for autoencoders)."""

    def loss(self, batch: StepInput) -> StepOutput:
        """One normalised batch's loss, with the parts the trainer records."""
        raise InputError(f"glasslab cannot train '{self.architecture}' dictionaries")

    def before_optimizer_step(self) -> None:
        """Edit the gradients (e.g. keep decoder rows on the unit sphere); called under ``no_grad``."""

    def after_optimizer_step(self) -> None:
        """Restore constraints the step broke (e.g. renormalise decoder rows); called under ``no_grad``."""

    def finish_training(self, scale: float, target_scale: float | None = None) -> None:
        """Fold the input scale (training saw ``scale * x``) and, for a transcoder, the target's (it predicted
        ``target_scale * y``) into the weights so the dictionary reads and writes raw activations; freeze it."""
        raise InputError(f"glasslab cannot train '{self.architecture}' dictionaries")
