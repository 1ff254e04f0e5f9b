"""A sparse autoencoder over one hook's activations: encode to features, decode back.

Every architecture SAELens publishes is one formula over the same parameter names
(``W_enc [d_in, d_sae]``, ``b_enc``, ``W_dec [d_sae, d_in]``, ``b_dec``, plus ``threshold`` for JumpReLU and
``b_gate``/``b_mag``/``r_mag`` for gated SAEs), so one module reads them all:

- standard (ReLU): ``f = relu(x' W_enc + b_enc)`` where ``x' = x - b_dec`` if ``apply_b_dec_to_input``;
- topk: keep the k largest pre-activations per token (ReLU'd), the rest 0 (Gao et al. 2024);
- batchtopk: at inference a JumpReLU with the learned global ``threshold``, else per-token TopK;
- jumprelu: ``f = pre * (pre > threshold)`` (Rajamanoharan et al. 2024);
- gated: a gate ``x' W_enc + b_gate > 0`` times a magnitude ``relu(x' (W_enc * exp(r_mag)) + b_mag)``.

The reconstruction error ``x - decode(encode(x))`` is what splicing keeps, so an SAE spliced in with
no feature changed reproduces the model exactly (see ``glasslab.sae`` interventions).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from .config import SAEConfig
from .memory import check_memory

# Parameters beyond W_enc/b_enc/W_dec/b_dec, each [d_sae]. A batchtopk SAE may also carry a learned
# global ``threshold`` (the loader adds it when the file has one).
_EXTRA_PARAMS = {"jumprelu": ("threshold",), "gated": ("b_gate", "b_mag", "r_mag")}


class SAE(nn.Module):
    """An SAE with frozen parameters by default; the trainer turns gradients on for its own copy."""

    def __init__(self, cfg: SAEConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.cfg = cfg
        shape = self.shapes_for(cfg)
        check_memory(shape, dtype, device, f"an SAE with d_in={cfg.d_in}, d_sae={cfg.d_sae}")
        for name, size in shape.items():
            self.register_parameter(name, nn.Parameter(torch.zeros(size, dtype=dtype, device=device)))
        self.requires_grad_(False)
        # Set by glasslab.sae.loading: where the SAE came from (for labels and links) and its labels, read once.
        self.origin: object | None = None
        self.labels_cache: dict | None = None

    @classmethod
    def shapes_for(cls, cfg: SAEConfig) -> dict[str, tuple[int, ...]]:
        """Each parameter's shape, known before anything is allocated (loaders check files against it)."""
        shape = {
            "W_enc": (cfg.d_in, cfg.d_sae),
            "b_enc": (cfg.d_sae,),
            "W_dec": (cfg.d_sae, cfg.d_in),
            "b_dec": (cfg.d_in,),
        }
        for name in cls.extra_parameter_names(cfg):
            shape[name] = (cfg.d_sae,)
        if cfg.architecture == "gated":
            del shape["b_enc"]  # gated SAEs have separate gate and magnitude biases instead
        return shape

    @staticmethod
    def extra_parameter_names(cfg: SAEConfig) -> tuple[str, ...]:
        return _EXTRA_PARAMS.get(cfg.architecture, ())

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(param.shape) for name, param in self.named_parameters()}

    @property
    def hook(self) -> str:
        return self.cfg.hook

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    @property
    def has_threshold(self) -> bool:
        return hasattr(self, "threshold")

    # -- the formulas ---------------------------------------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_sae] encoder pre-activations (gated: the gate's)."""
        centred = self._centred(x)
        bias = self.b_gate if self.cfg.architecture == "gated" else self.b_enc
        return centred @ self.W_enc + bias

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_in] activations -> [..., d_sae] feature activations (non-negative, mostly zero)."""
        arch = self.cfg.architecture
        if arch == "gated":
            centred = self._centred(x)
            gate = (centred @ self.W_enc + self.b_gate) > 0
            magnitude = torch.relu(centred @ (self.W_enc * self.r_mag.exp()) + self.b_mag)
            return magnitude * gate
        pre = self.pre_activations(x)
        if arch == "standard":
            return torch.relu(pre)
        if arch == "jumprelu" or (arch == "batchtopk" and self.has_threshold):
            return pre * (pre > self.threshold)
        # topk (and batchtopk without a learned threshold): per-token top k.
        ranked = pre * self.W_dec.norm(dim=-1) if self.cfg.rescale_acts_by_decoder_norm else pre
        values, indices = torch.topk(ranked, k=min(int(self.cfg.k or 1), self.cfg.d_sae), dim=-1)
        return torch.zeros_like(ranked).scatter(-1, indices, torch.relu(values))

    def decode(self, features: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        """[..., d_sae] features -> [..., d_in] reconstruction. Input-dependent normalisations
        (constant_norm_rescale, layer_norm) undo themselves using ``like``, the original input."""
        if self.cfg.architecture in ("topk", "batchtopk") and self.cfg.rescale_acts_by_decoder_norm:
            features = features / self.W_dec.norm(dim=-1).clamp_min(1e-12)
        out = features @ self.W_dec + self.b_dec
        return self._denormalise(out, like)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x``."""
        return self.decode(self.encode(x), like=x)

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
        k = f", k={self.cfg.k}" if self.cfg.k and self.cfg.architecture in ("topk", "batchtopk") else ""
        return f"SAE({self.cfg.architecture}, {self.cfg.hook}, d_in={self.d_in}, d_sae={self.d_sae}{k})"
