"""The sparse autoencoder: the ``Dictionary`` every SAE architecture derives from.

Every architecture SAELens publishes is one formula over the same parameter names (``W_enc [d_in, d_sae]``,
``b_enc``, ``W_dec [d_sae, d_in]``, ``b_dec``, plus what the architecture adds), so this class holds what
they share: input normalisation, ``x - b_dec`` centring, the linear decoder, reading from and writing to
a hook, and the training steps common to all (unit-norm decoder rows, folding the input scale). The
formulas live in ``architectures.py``, one class each. ``SAE(cfg)`` builds the class registered for
``cfg.architecture``.

The reconstruction error ``x - decode(encode(x))`` is what splicing keeps, so an SAE spliced in with
no feature changed reproduces the model exactly (see ``glasslab.interventions.splice``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import torch
from torch import nn

from ..errors import InputError
from .base import Dictionary, LossSettings, StepInput, StepOutput
from .config import DictionaryConfig
from .registry import dictionary_class

_SHARED = ("W_enc", "b_enc", "W_dec", "b_dec")


class SAE(Dictionary):
    """An SAE with frozen parameters by default; training unfreezes them."""

    # Parameters measured in the input's units: folding the training's input scale divides them by it.
    input_unit_parameters: ClassVar[tuple[str, ...]] = ("b_enc", "b_dec")

    def __new__(cls, cfg: DictionaryConfig | None = None, *args: object, **kwargs: object) -> SAE:
        """``SAE(cfg)`` is an instance of the class registered for ``cfg.architecture``."""
        if cls is SAE and cfg is not None:
            kind = dictionary_class(cfg.architecture)
            if not issubclass(kind, SAE):
                raise InputError(f"architecture '{cfg.architecture}' is a {kind.__name__}, not an SAE")
            cls = kind
        return super().__new__(cls)

    def __init__(
        self,
        cfg: DictionaryConfig,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        *,
        optional: Iterable[str] = (),
    ) -> None:
        super().__init__(cfg, dtype, device, optional=optional)
        # Set by loading.py: where the SAE came from (for labels and links) and its labels, read once.
        self.origin: object | None = None
        self.labels_cache: dict | None = None

    @classmethod
    def declared_shapes(cls, cfg: DictionaryConfig) -> dict[str, tuple[int, ...]]:
        return {
            "W_enc": (cfg.d_in, cfg.d_sae),
            "b_enc": (cfg.d_sae,),
            "W_dec": (cfg.d_sae, cfg.d_in),
            "b_dec": (cfg.d_in,),
        }

    @staticmethod
    def extra_parameter_names(cfg: DictionaryConfig) -> tuple[str, ...]:
        """The architecture's parameters beyond W_enc/b_enc/W_dec/b_dec, each [d_sae]."""
        return tuple(name for name in SAE.shapes_for(cfg) if name not in _SHARED)

    @property
    def hook(self) -> str:
        return self.cfg.hook

    @property
    def has_threshold(self) -> bool:
        return hasattr(self, "threshold")

    # -- the formulas shared by all architectures -----------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_sae] encoder pre-activations."""
        return self._centred(x) @ self.W_enc + self.b_enc

    def decode(self, features: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        """[..., d_sae] features -> [..., d_in] reconstruction. Input-dependent normalisations
        (constant_norm_rescale, layer_norm) undo themselves using ``like``, the original input."""
        return self._denormalise(features @ self.W_dec + self.b_dec, like)

    def error(self, x: torch.Tensor) -> torch.Tensor:
        """What the SAE misses: ``x - reconstruction``; adding it back makes a splice exact."""
        return x - self.forward(x)

    # -- normalisation --------------------------------------------------------------------------------
    def _centred(self, x: torch.Tensor) -> torch.Tensor:
        x = self._normalise(x.to(self.W_enc.dtype))
        return x - self.b_dec if self.cfg.apply_b_dec_to_input else x

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.cfg.normalize_activations
        if mode == "constant_norm_rescale":
            return x * (self.cfg.d_in**0.5) / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        if mode == "layer_norm":
            centred = x - x.mean(dim=-1, keepdim=True)
            return centred / (centred.std(dim=-1, keepdim=True) + 1e-5)
        # "expected_average_only_in" scales only during training; released SAEs have it folded in.
        return x

    def _denormalise(self, out: torch.Tensor, like: torch.Tensor | None) -> torch.Tensor:
        mode = self.cfg.normalize_activations
        if mode not in ("constant_norm_rescale", "layer_norm"):
            return out
        if like is None:
            raise InputError(f"decoding an SAE with normalize_activations='{mode}' needs the original input")
        like = like.to(out.dtype)
        if mode == "constant_norm_rescale":
            return out * like.norm(dim=-1, keepdim=True) / (self.cfg.d_in**0.5)
        centred = like - like.mean(dim=-1, keepdim=True)
        return out * centred.std(dim=-1, keepdim=True) + like.mean(dim=-1, keepdim=True)

    # -- where the SAE reads in the model -------------------------------------------------------------
    def read(self, act: torch.Tensor) -> torch.Tensor:
        """The SAE's input from a hook's activation: attn.z heads are flattened (or one head picked)."""
        if self.cfg.hook_head_index is not None:
            return act[..., self.cfg.hook_head_index, :]
        if act.dim() >= 4 and self.cfg.hook.endswith(("attn.z", "attn.q", "attn.k", "attn.v")):
            return act.flatten(-2)
        return act

    def write(self, value: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Put an SAE-shaped ``value`` back into the hook's activation ``act`` (the inverse of ``read``)."""
        value = value.to(act.dtype)
        if self.cfg.hook_head_index is not None:
            out = act.clone()
            out[..., self.cfg.hook_head_index, :] = value
            return out
        return value.reshape(act.shape)

    def __repr__(self) -> str:
        k = f", k={self.cfg.k}" if self.cfg.k and self.uses_k else ""
        return f"SAE({self.cfg.architecture}, {self.cfg.hook}, d_in={self.d_in}, d_sae={self.d_sae}{k})"

    # -- training steps every SAE shares --------------------------------------------------------------
    def start_training(self, generator: torch.Generator, settings: LossSettings) -> None:
        """Unit-norm random decoder rows, the encoder their transpose (Gao et al. 2024), zero biases.

        Training works on normalised inputs with ``x - b_dec`` centring whatever the config says; the
        trained SAE is saved with ``apply_b_dec_to_input`` and no normaliser, which is the same map."""
        w_dec = torch.randn(self.d_sae, self.d_in, generator=generator)
        w_dec /= w_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.t().clone())
        self.b_enc = nn.Parameter(torch.zeros(self.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(self.d_in))

    def fit_to_sample(self, sample: torch.Tensor, target: torch.Tensor | None = None) -> None:
        """b_dec at the sample's geometric median: a robust centre for ``x - b_dec``."""
        with torch.no_grad():
            self.b_dec.copy_(geometric_median(sample[:8192]))

    def before_optimizer_step(self) -> None:
        """Remove the gradient's component along each decoder row (the row's norm is fixed at 1).

        Call under ``no_grad``: with autograd on, the in-place edit would give the gradient a graph holding
        the previous step's decoder, and each step's graph the one before (memory grew ~25 MB per step)."""
        grad = self.W_dec.grad
        if grad is not None:
            grad -= (grad * self.W_dec).sum(-1, keepdim=True) * self.W_dec

    def after_optimizer_step(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def finish_training(self, scale: float, target_scale: float | None = None) -> None:
        """Trained on c x: pre = (c x - b_dec) W_enc + b_enc = c [(x - b_dec / c) W_enc + b_enc / c], and the
        reconstruction c x ~ f W_dec + b_dec. With b_enc, b_dec (and thresholds, see subclasses) divided by c
        the new pre-activations are pre / c, so the same features are chosen (TopK) or pass (ReLU, JumpReLU)
        with activations f / c, and (f / c) W_dec + b_dec / c reconstructs x. Decoder rows keep unit norm.
        An autoencoder's target is its input, so ``target_scale`` is ``scale`` or None."""
        for name, param in list(self.named_parameters()):
            value = param.detach() / scale if name in self.input_unit_parameters else param.detach()
            setattr(self, name, nn.Parameter(value.contiguous(), requires_grad=False))

    def _dense_output(self, batch: StepInput, features: torch.Tensor, sparsity: torch.Tensor) -> StepOutput:
        """The step's output for an architecture whose training features are a dense [batch, d_sae] matrix."""
        error = batch.wanted - (features @ self.W_dec + self.b_dec)
        active = features.detach() > 0
        return StepOutput(
            reconstruction=error.pow(2).sum(-1).mean(),
            error=error.detach(),
            fired=active.sum(0),
            l0=float(active.sum()) / batch.x.shape[0],
            sparsity=sparsity,
        )


def geometric_median(points: torch.Tensor, iterations: int = 30, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the summed distance to ``points`` (robust b_dec init)."""
    median = points.mean(0)
    for _ in range(iterations):
        weights = 1.0 / (points - median).norm(dim=-1).clamp_min(eps)
        updated = (weights[:, None] * points).sum(0) / weights.sum()
        if (updated - median).norm() < eps * max(1.0, float(median.norm())):
            return updated
        median = updated
    return median
