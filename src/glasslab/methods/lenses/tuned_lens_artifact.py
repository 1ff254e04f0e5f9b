"""The tuned lens as an artifact (``methods.lenses.tuned_lens`` trains it): the per-layer translators, applying
them, and saving and loading them at the store's ``tuned-lens/<key>/lens/`` (see ``methods.lenses.tuned_lens``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ...errors import InputError
from ...model.model import Model
from ...store import TUNED_LENS, ArtifactNotFound, locate, location, resolve, save
from ...views.result import Result
from .logit_lens import EMBED_LAYER, lens_hook

FORMAT = 1
_EPS = 1e-6  # inside rms(h), as in the models' RMSNorms
_WEIGHTS, _META = "lens.safetensors", "lens.json"


def lens_folder(model: Model) -> Path:
    """The store folder of ``model``'s tuned lens (its ``lens/`` and ``checkpoint/``)."""
    return location(TUNED_LENS, model.key)


def _normalise(h: torch.Tensor) -> torch.Tensor:
    return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + _EPS)


@dataclass(frozen=True, eq=False)
class TunedLens(Result):
    """Per-layer translators: ``weight[i]``, ``bias[i]`` serve layer ``i - 1`` (row 0 = embeddings, last = identity)."""

    kind = "tuned_lens"
    json_keys = (
        "format",
        "model",
        "key",
        "n_layers",
        "d_model",
        "tokens",
        "corpus",
        "seq_len",
        "ridge",
        "kl_steps",
        "objective",
        "translator",
        "path",
    )
    translator = "W n(h) + b with n(h) = h / rms(h); identity at the last layer"

    model: str
    key: str
    weight: torch.Tensor = field(repr=False)  # [n_layers + 1, d_model, d_model], float32, applied as n(h) @ weight
    bias: torch.Tensor = field(repr=False)  # [n_layers + 1, d_model]
    tokens: int  # positions the least-squares fit saw
    corpus: str
    seq_len: int
    ridge: float
    kl_steps: int
    path: Path | None = None

    @property
    def n_layers(self) -> int:
        return self.weight.shape[0] - 1

    @property
    def objective(self) -> str:
        """Plain English: what produced these translators."""
        fit = f"least squares on {self.tokens:,} tokens of {self.corpus} (ridge {self.ridge:g})"
        if self.kl_steps:
            return f"{fit}, then {self.kl_steps} Adam steps on KL(output || lens), the paper's objective"
        return f"{fit}; not refined on the paper's KL objective"

    def check_fits(self, model: Model) -> None:
        if self.key != model.key or self.weight.shape[1:] != (model.d_model, model.d_model):
            raise InputError(
                f"this tuned lens was trained for {self.key}, not {model.key}; train one for this model "
                "with: glasslab tuned-lens train"
            )

    def translate(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        """Layer ``layer``'s residual (-1 = embeddings) mapped into the last layer's basis; identity at the last."""
        if layer == self.n_layers - 1:
            return resid
        index = layer + 1
        weight, bias = self.weight[index].to(resid.device), self.bias[index].to(resid.device)
        return (_normalise(resid.float()) @ weight + bias).to(resid.dtype)

    def save(self, folder: Path) -> Path:
        """Write ``lens.safetensors`` + ``lens.json`` into ``folder`` atomically; returns ``folder``."""
        with save(
            TUNED_LENS, self.key, Path(folder), summary={"tokens": self.tokens, "kl_steps": self.kl_steps}
        ) as tmp:
            save_file({"weight": self.weight.contiguous(), "bias": self.bias.contiguous()}, str(tmp / _WEIGHTS))
            meta = {k: v for k, v in self.to_dict().items() if k != "path"}
            (tmp / _META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return folder

    def _json_format(self) -> int:
        return FORMAT

    def _json_d_model(self) -> int:
        return self.weight.shape[1]


def load_tuned_lens(model: Model, path: str | Path | None = None) -> TunedLens:
    """The tuned lens stored for ``model`` (or the one at ``path``), checked against the model."""
    where = Path(path) if path is not None else "lens"  # the store keeps one lens per model, named "lens"
    try:
        folder = resolve(TUNED_LENS, model.key, where)
    except ArtifactNotFound:
        folder = locate(TUNED_LENS, model.key, where)[0]
        raise InputError(
            f"no tuned lens for {model.name} at {folder}; train one with: glasslab tuned-lens train"
        ) from None
    try:
        meta = json.loads((folder / _META).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / _WEIGHTS))
        weight, bias = tensors["weight"].float(), tensors["bias"].float()
        lens = TunedLens(
            model=meta["model"],
            key=meta["key"],
            weight=weight,
            bias=bias,
            tokens=int(meta["tokens"]),
            corpus=str(meta["corpus"]),
            seq_len=int(meta["seq_len"]),
            ridge=float(meta["ridge"]),
            kl_steps=int(meta["kl_steps"]),
            path=folder,
        )
        if meta.get("format") != FORMAT or weight.dim() != 3 or bias.shape != weight.shape[:2]:
            raise ValueError("unexpected format or shapes")
        if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
            raise ValueError("non-finite weights")
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputError(
            f"the tuned lens at {folder} is unreadable ({reason}); delete it and train again with: "
            "glasslab tuned-lens train"
        ) from None
    if lens.n_layers != model.n_layers:
        raise InputError(
            f"the tuned lens at {folder} is for {lens.n_layers} layers, {model.name} has "
            f"{model.n_layers}; train one for this model with: glasslab tuned-lens train"
        )
    lens.check_fits(model)
    return lens


def _hooks(model: Model) -> list[str]:
    return [lens_hook(layer) for layer in range(EMBED_LAYER, model.n_layers)]
