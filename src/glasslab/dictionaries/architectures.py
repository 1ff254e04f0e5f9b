"""The SAE architectures SAELens publishes, one class each, registered under SAELens's names.

- standard (ReLU): ``f = relu(x' W_enc + b_enc)`` where ``x' = x - b_dec`` if ``apply_b_dec_to_input``;
  trained with an L1 penalty (Bricken et al. 2023; decoder rows have unit norm, so the L1 of the features
  is the norm-weighted L1 of Anthropic's update);
- topk: keep the k largest pre-activations per token (ReLU'd), the rest 0 (Gao et al. 2024); trained on
  the reconstruction alone, dead features revived by the AuxK loss;
- batchtopk: at inference a JumpReLU with the learned global ``threshold``, else per-token TopK;
- jumprelu: ``f = pre * (pre > threshold)`` (Rajamanoharan et al. 2024); trained with an L0 penalty and
  straight-through gradients for the threshold, learned as its logarithm;
- gated: a gate ``x' W_enc + b_gate > 0`` times a magnitude ``relu(x' (W_enc * exp(r_mag)) + b_mag)``.

Each training loss is the squared error summed over d_in, averaged over tokens, plus the
architecture's penalty, on inputs normalised to mean squared norm d_in (see ``glasslab.dictionaries.train``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .autograd import JumpReLU, Step, TopKEncode, decode_sparse
from .base import LossSettings, StepInput, StepOutput
from .config import DictionaryConfig
from .registry import register
from .sae import SAE


@register
class StandardSAE(SAE):
    """ReLU features, trained with an L1 penalty."""

    architecture = "standard"
    trainable = True

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.pre_activations(x))

    def loss(self, batch: StepInput) -> StepOutput:
        features = torch.relu(torch.addmm(self.b_enc, batch.x - self.b_dec, self.W_enc))
        penalty = batch.settings.l1_coefficient * features.sum(-1).mean()
        return self._dense_output(batch, features, penalty)


@register
class TopKSAE(SAE):
    """The k largest pre-activations per token, trained with the sparse TopK gradient and AuxK."""

    architecture = "topk"
    trainable = True
    uses_k = True

    @classmethod
    def check_config(cls, cfg: DictionaryConfig) -> None:
        if not cfg.k:
            raise InputError("a TopK SAE needs k (the number of active features per token) in its cfg.json")

    @classmethod
    def check_training(cls, cfg: DictionaryConfig) -> None:
        if cfg.k is not None and cfg.k > cfg.d_sae:
            raise InputError(f"k={cfg.k} is more than the SAE's {cfg.d_sae} features; lower k or widen the SAE")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_activations(x)
        ranked = pre * self.W_dec.norm(dim=-1) if self.cfg.rescale_acts_by_decoder_norm else pre
        values, indices = torch.topk(ranked, k=min(int(self.cfg.k or 1), self.cfg.d_sae), dim=-1)
        return torch.zeros_like(ranked).scatter(-1, indices, torch.relu(values))

    def decode(self, features: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        if self.cfg.rescale_acts_by_decoder_norm:
            features = features / self.W_dec.norm(dim=-1).clamp_min(1e-12)
        return super().decode(features, like)

    def loss(self, batch: StepInput) -> StepOutput:
        x = batch.x
        acts, indices = TopKEncode.apply(x, self.b_dec, self.W_enc, self.b_enc, min(int(self.cfg.k or 1), self.d_sae))
        error = batch.wanted - decode_sparse(acts, indices, self.W_dec, self.b_dec)
        return StepOutput(
            reconstruction=error.pow(2).sum(-1).mean(),
            error=error.detach(),
            fired=torch.bincount(indices[acts > 0], minlength=self.d_sae),
            l0=float((acts > 0).sum()) / x.shape[0],
            auxiliary=self.aux_loss(x, error.detach(), batch.dead, batch.settings),
        )

    def aux_loss(
        self, x: torch.Tensor, error: torch.Tensor, dead: torch.Tensor, settings: LossSettings
    ) -> torch.Tensor:
        """AuxK on the centred input ``x - b_dec`` (see ``auxk_loss``)."""
        return auxk_loss(x - self.b_dec, error, dead, settings, self.W_enc, self.b_enc, self.W_dec)


def auxk_loss(
    encoder_in: torch.Tensor,
    error: torch.Tensor,
    dead: torch.Tensor,
    settings: LossSettings,
    w_enc: torch.Tensor,
    b_enc: torch.Tensor,
    w_dec: torch.Tensor,
) -> torch.Tensor:
    """AuxK (Gao et al. 2024): the top ``aux_k`` dead features model the main reconstruction's error.

    Unnormalised, like the main loss, and scaled down while few features are dead. The paper's version
    (normalised by ||e||^2, ~30x stronger here once FVE passes 0.95) was measured worse on the default
    model's layer 6: 19% of features dead by step 696 against 6% with this one (docs/sae.md).
    """
    dead_ids = dead.nonzero().reshape(-1)
    if dead_ids.numel() == 0 or settings.aux_coefficient == 0:
        return torch.zeros(())
    pre = torch.addmm(b_enc[dead_ids], encoder_in, w_enc[:, dead_ids])
    values, local = pre.topk(min(settings.aux_k, dead_ids.numel()), dim=-1, sorted=False)
    recon = F.embedding_bag(dead_ids[local], w_dec, per_sample_weights=torch.relu(values), mode="sum")
    scale = min(dead_ids.numel() / settings.aux_k, 1.0)
    return settings.aux_coefficient * scale * (recon - error).pow(2).sum(-1).mean()


@register
class BatchTopKSAE(TopKSAE):
    """Trained on the top k x batch pre-activations of a batch; read as a JumpReLU with the learned global
    threshold when the file has one, else as per-token TopK."""

    architecture = "batchtopk"
    trainable = False
    optional_parameters = ("threshold",)

    @classmethod
    def check_config(cls, cfg: DictionaryConfig) -> None:
        """k may be absent: an SAE with a learned threshold needs none."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if not self.has_threshold:
            return super().encode(x)
        pre = self.pre_activations(x)
        return pre * (pre > self.threshold)


@register
class JumpReLUSAE(SAE):
    """Pre-activations above a learned per-feature threshold pass unchanged, the rest are 0."""

    architecture = "jumprelu"
    trainable = True
    input_unit_parameters = ("b_enc", "b_dec", "threshold")

    @classmethod
    def declared_shapes(cls, cfg: DictionaryConfig) -> dict[str, tuple[int, ...]]:
        return {**super().declared_shapes(cfg), "threshold": (cfg.d_sae,)}

    @property
    def current_threshold(self) -> torch.Tensor:
        """The threshold, also while training holds it as ``log_threshold``."""
        return self.log_threshold.exp() if "log_threshold" in self._parameters else self.threshold

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_activations(x)
        return pre * (pre > self.current_threshold)

    def start_training(self, generator: torch.Generator, settings: LossSettings) -> None:
        """The threshold is learned as its logarithm (always positive; Adam's steps relative to its size)."""
        super().start_training(generator, settings)
        del self.threshold
        self.log_threshold = nn.Parameter(torch.full((self.d_sae,), math.log(settings.init_threshold)))

    def loss(self, batch: StepInput) -> StepOutput:
        pre = torch.addmm(self.b_enc, batch.x - self.b_dec, self.W_enc)
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
class GatedSAE(SAE):
    """A gate decides which features are on; a magnitude path (the encoder rescaled) sets how much."""

    architecture = "gated"

    @classmethod
    def declared_shapes(cls, cfg: DictionaryConfig) -> dict[str, tuple[int, ...]]:
        shape = super().declared_shapes(cfg)
        del shape["b_enc"]  # separate gate and magnitude biases instead
        return {**shape, "b_gate": (cfg.d_sae,), "b_mag": (cfg.d_sae,), "r_mag": (cfg.d_sae,)}

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """The gate's pre-activations."""
        return self._centred(x) @ self.W_enc + self.b_gate

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        centred = self._centred(x)
        gate = (centred @ self.W_enc + self.b_gate) > 0
        magnitude = torch.relu(centred @ (self.W_enc * self.r_mag.exp()) + self.b_mag)
        return magnitude * gate
