"""Transcoders: dictionaries that read one hook and predict another (an MLP's input -> its output).

A transcoder's features are read from the input like an SAE's, ``pre = x W_enc + b_enc``, but its decoder
writes into the output's space: ``y_hat = f W_dec + b_dec (+ x W_skip^T)``, with ``W_dec [d_sae, d_out]``
and ``b_dec [d_out]``; the input is never centred by ``b_dec`` (it lives in the other space). The skip
kinds add the affine skip connection of Paulo et al. 2025, stored as SAELens stores it, ``W_skip
[d_out, d_in]`` (``skip_matrix`` is its ``[d_in, d_out]`` transpose, acting on row vectors). Kinds,
registered under SAELens's names where it has them:

- ``transcoder`` / ``skip_transcoder``: ReLU features (SAELens reads and writes these; glasslab reads them);
- ``jumprelu_transcoder`` / ``jumprelu_skip_transcoder``: features pass above a per-feature threshold;
- ``topk_transcoder`` / ``topk_skip_transcoder``: the k largest pre-activations per token (glasslab's own
  name; SAELens has no TopK transcoder), trained with the sparse TopK gradient and AuxK.

Training minimises ``||target - y_hat||^2`` through the same trainer as SAEs (``training.py``), on inputs
and targets each scaled to mean squared norm equal to their width; ``finish_training`` folds both scales.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from ..errors import InputError
from .architectures import auxk_loss
from .autograd import JumpReLU, Step, TopKEncode, decode_sparse
from .base import Dictionary, LossSettings, StepInput, StepOutput
from .config import DictionaryConfig
from .registry import register


@register
class Transcoder(Dictionary):
    """ReLU features of the input decoding into the output's space (SAELens's ``transcoder``), trained with
    an L1 penalty; the other kinds change the nonlinearity and its training loss."""

    architecture = "transcoder"
    trainable = True
    has_skip: ClassVar[bool] = False
    # Parameters measured in the output's units, and those mapping input to output units (folding scales).
    output_unit_parameters: ClassVar[tuple[str, ...]] = ("b_enc", "b_dec")

    @classmethod
    def declared_shapes(cls, cfg: DictionaryConfig) -> dict[str, tuple[int, ...]]:
        shape = {
            "W_enc": (cfg.d_in, cfg.d_sae),
            "b_enc": (cfg.d_sae,),
            "W_dec": (cfg.d_sae, cfg.out_width),
            "b_dec": (cfg.out_width,),
        }
        if cls.has_skip:
            shape["W_skip"] = (cfg.out_width, cfg.d_in)
        return shape

    @classmethod
    def check_config(cls, cfg: DictionaryConfig) -> None:
        if cfg.apply_b_dec_to_input:
            raise InputError(
                f"a {cls.architecture} reads its input uncentred: set apply_b_dec_to_input=False "
                "(its b_dec is in the output's space)"
            )
        # "expected_average_only_in" scales only during training; released files have it folded in.
        if cfg.normalize_activations not in ("none", "expected_average_only_in"):
            raise InputError(
                f"glasslab reads transcoders that need no input normalisation, not {cfg.normalize_activations!r}"
            )

    @property
    def hook(self) -> str:
        return self.cfg.hook

    @property
    def hook_out(self) -> str | None:
        return self.cfg.hook_out

    @property
    def d_out(self) -> int:
        return self.cfg.out_width

    @property
    def skip_matrix(self) -> torch.Tensor | None:
        """``[d_in, d_out]``: the skip connection acting on row vectors (None without one)."""
        return self.W_skip.t() if self.has_skip else None

    # -- the formulas ---------------------------------------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_sae]: ``x W_enc + b_enc``, before the nonlinearity."""
        return x.to(self.W_enc.dtype) @ self.W_enc + self.b_enc

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        """The nonlinearity: pre-activations -> feature activations."""
        return torch.relu(pre)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.pre_activations(x))

    def decode(self, features: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        """[..., d_sae] -> [..., d_out] without the skip connection (which needs the input: see ``forward``)."""
        return features @ self.W_dec + self.b_dec

    def skip(self, x: torch.Tensor) -> torch.Tensor | float:
        """The skip connection's part of the prediction (0 without one)."""
        return x.to(self.W_skip.dtype) @ self.W_skip.t() if self.has_skip else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The prediction of the output from the input ``x``."""
        return self.decode(self.encode(x)) + self.skip(x)

    def __repr__(self) -> str:
        k = f", k={self.cfg.k}" if self.uses_k else ""
        return (
            f"Transcoder({self.architecture}, {self.hook} -> {self.hook_out}, d_in={self.d_in}, "
            f"d_sae={self.d_sae}, d_out={self.d_out}{k})"
        )

    # -- training -------------------------------------------------------------------------------------
    def start_training(self, generator: torch.Generator, settings: LossSettings) -> None:
        """Unit-norm random decoder rows and encoder columns (independent: they live in different spaces),
        zero biases and a zero skip connection."""
        w_dec = torch.randn(self.d_sae, self.d_out, generator=generator)
        w_enc = torch.randn(self.d_in, self.d_sae, generator=generator)
        self.W_dec = nn.Parameter(w_dec / w_dec.norm(dim=-1, keepdim=True))
        self.W_enc = nn.Parameter(w_enc / w_enc.norm(dim=0, keepdim=True))
        self.b_enc = nn.Parameter(torch.zeros(self.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(self.d_out))
        if self.has_skip:
            self.W_skip = nn.Parameter(torch.zeros(self.d_out, self.d_in))

    def fit_to_sample(self, sample: torch.Tensor, target: torch.Tensor | None = None) -> None:
        """b_dec at the targets' mean: the prediction starts at the average output."""
        if target is None:
            raise InputError("a transcoder trains on (input, target) pairs; these rows have no target")
        with torch.no_grad():
            self.b_dec.copy_(target.mean(0))

    def before_optimizer_step(self) -> None:
        """Keep decoder rows on the unit sphere (see ``SAE.before_optimizer_step``)."""
        grad = self.W_dec.grad
        if grad is not None:
            grad -= (grad * self.W_dec).sum(-1, keepdim=True) * self.W_dec

    def after_optimizer_step(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def finish_training(self, scale: float, target_scale: float | None = None) -> None:
        """Trained on x' = a x to predict y' = c y (a = ``scale``, c = ``target_scale``):
        y' ~ phi(a x W_enc + b_enc) W_dec + b_dec + a x W_skip^T. The nonlinearities are positively
        homogeneous (thresholds scale with them), so phi(pre) / c = phi(x (a / c) W_enc + b_enc / c) and
        y ~ phi(x (a / c) W_enc + b_enc / c) W_dec + b_dec / c + x (a / c) W_skip^T: W_enc and W_skip times
        a / c, biases (and thresholds) divided by c; decoder rows keep unit norm and features are in the
        output's units."""
        c = target_scale or 1.0
        for name, param in list(self.named_parameters()):
            value = param.detach()
            if name in ("W_enc", "W_skip"):
                value = value * (scale / c)
            elif name in self.output_unit_parameters:
                value = value / c
            setattr(self, name, nn.Parameter(value.contiguous(), requires_grad=False))

    def loss(self, batch: StepInput) -> StepOutput:
        if batch.target is None:
            raise InputError("a transcoder trains on (input, target) pairs; these rows have no target")
        features = self.activation(torch.addmm(self.b_enc, batch.x, self.W_enc))
        return self._dense_output(batch, features, batch.settings.l1_coefficient * features.sum(-1).mean())

    def _dense_output(self, batch: StepInput, features: torch.Tensor, sparsity: torch.Tensor) -> StepOutput:
        error = batch.wanted - (features @ self.W_dec + self.b_dec + self.skip(batch.x))
        active = features.detach() > 0
        return StepOutput(
            reconstruction=error.pow(2).sum(-1).mean(),
            error=error.detach(),
            fired=active.sum(0),
            l0=float(active.sum()) / batch.x.shape[0],
            sparsity=sparsity,
        )


@register
class SkipTranscoder(Transcoder):
    """SAELens's ``skip_transcoder``: ReLU features plus an affine skip connection."""

    architecture = "skip_transcoder"
    has_skip = True


@register
class JumpReLUTranscoder(Transcoder):
    """SAELens's ``jumprelu_transcoder``: pre-activations above a learned per-feature threshold pass
    unchanged; trained with an L0 penalty and straight-through threshold gradients (``autograd.py``)."""

    architecture = "jumprelu_transcoder"
    output_unit_parameters = ("b_enc", "b_dec", "threshold")

    @classmethod
    def declared_shapes(cls, cfg: DictionaryConfig) -> dict[str, tuple[int, ...]]:
        return {**super().declared_shapes(cfg), "threshold": (cfg.d_sae,)}

    @property
    def current_threshold(self) -> torch.Tensor:
        """The threshold, also while training holds it as ``log_threshold``."""
        return self.log_threshold.exp() if "log_threshold" in self._parameters else self.threshold

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return pre * (pre > self.current_threshold)

    def start_training(self, generator: torch.Generator, settings: LossSettings) -> None:
        super().start_training(generator, settings)
        del self.threshold
        self.log_threshold = nn.Parameter(torch.full((self.d_sae,), math.log(settings.init_threshold)))

    def loss(self, batch: StepInput) -> StepOutput:
        pre = torch.addmm(self.b_enc, batch.x, self.W_enc)
        theta, bandwidth = self.log_threshold.exp(), batch.settings.bandwidth
        features = JumpReLU.apply(pre, theta, bandwidth)
        penalty = batch.settings.l0_coefficient * Step.apply(pre, theta, bandwidth).sum(-1).mean()
        return self._dense_output(batch, features, penalty)

    def finish_training(self, scale: float, target_scale: float | None = None) -> None:
        threshold = self.log_threshold.detach().exp()
        del self.log_threshold
        self.threshold = nn.Parameter(threshold)
        super().finish_training(scale, target_scale)


@register
class JumpReLUSkipTranscoder(JumpReLUTranscoder):
    """SAELens's ``jumprelu_skip_transcoder``: a JumpReLU transcoder plus an affine skip connection."""

    architecture = "jumprelu_skip_transcoder"
    has_skip = True


@register
class TopKTranscoder(Transcoder):
    """The k largest pre-activations per token (ReLU'd), trained on the prediction error with the sparse
    TopK gradient and AuxK (the dead features model the prediction's error)."""

    architecture = "topk_transcoder"
    uses_k = True

    @classmethod
    def check_config(cls, cfg: DictionaryConfig) -> None:
        super().check_config(cfg)
        if not cfg.k:
            raise InputError(f"a {cls.architecture} needs k (the number of active features per token)")

    @classmethod
    def check_training(cls, cfg: DictionaryConfig) -> None:
        if cfg.k is not None and cfg.k > cfg.d_sae:
            raise InputError(f"k={cfg.k} is more than the transcoder's {cfg.d_sae} features; lower k or widen it")

    @property
    def k(self) -> int:
        return min(int(self.cfg.k or 1), self.d_sae)

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        values, indices = torch.topk(pre, k=self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))

    def loss(self, batch: StepInput) -> StepOutput:
        if batch.target is None:
            raise InputError("a transcoder trains on (input, target) pairs; these rows have no target")
        x = batch.x
        uncentred = torch.zeros(self.d_in, dtype=x.dtype, device=x.device)
        acts, indices = TopKEncode.apply(x, uncentred, self.W_enc, self.b_enc, self.k)
        error = batch.wanted - (decode_sparse(acts, indices, self.W_dec, self.b_dec) + self.skip(x))
        return StepOutput(
            reconstruction=error.pow(2).sum(-1).mean(),
            error=error.detach(),
            fired=torch.bincount(indices[acts > 0], minlength=self.d_sae),
            l0=float((acts > 0).sum()) / x.shape[0],
            auxiliary=auxk_loss(x, error.detach(), batch.dead, batch.settings, self.W_enc, self.b_enc, self.W_dec),
        )


@register
class TopKSkipTranscoder(TopKTranscoder):
    """A TopK transcoder plus an affine skip connection."""

    architecture = "topk_skip_transcoder"
    has_skip = True
