"""Steering vectors made, saved and loaded (``methods.intervene.steering`` applies them): the vector from contrastive
prompt pairs by ``caa``, ``actadd`` or ``pca``, and its store layout (see ``methods.intervene.steering``'s docstring).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ...errors import GlasslabError, InputError
from ...model.model import Model
from ...store import STEERING, locate, resolve, save
from ...views.explanations import explanation
from ...views.figures import Bars, Figure
from ...views.result import Result

Method = Literal["caa", "actadd", "pca"]
METHODS: tuple[str, ...] = ("caa", "actadd", "pca")
POSITIONS: tuple[str, ...] = ("last", "mean")
FORMAT = 1
_NEGLIGIBLE = 1e-4  # a vector this small, relative to the activations, is zero up to rounding
_WEIGHTS, _META = "vector.safetensors", "vector.json"


@dataclass(frozen=True, eq=False)
class SteeringVector(Result):
    """A steering direction at one hook, with how it was made. ``vector`` is float32 ``[d_model]``."""

    kind = "steering_vector"
    json_keys = (
        "format",
        "model",
        "key",
        "config_hash",
        "hook",
        "method",
        "position",
        "pairs_count",
        "pairs",
        "d_model",
        "norm",
        "pair_projections",
        "pair_cosines",
        "explained_variance",
        "name",
        "path",
    )

    model: str
    key: str  # model name, layer count and config hash (see Model.key)
    hook: str
    method: str
    position: str  # "last" token of each prompt, or "mean" over its tokens
    pairs: list[tuple[str, str]]
    vector: torch.Tensor = field(repr=False)
    pair_projections: list[float]  # each pair's difference projected on the unit vector
    pair_cosines: list[float]  # cosine between each pair's difference and the vector
    explained: float | None = None  # pca: share of the differences' (uncentred) variance along the direction
    name: str | None = None
    path: Path | None = None

    @property
    def norm(self) -> float:
        return float(self.vector.norm())

    @property
    def unit(self) -> torch.Tensor:
        return self.vector / self.vector.norm().clamp_min(1e-12)

    @property
    def config_hash(self) -> str:
        return self.key.rsplit("-", 1)[-1]

    def figure(self) -> Figure:
        labels = [f"{p!r} - {n!r}" for p, n in self.pairs]
        extra = {"hook": self.hook, "method": self.method, "pairs": str(len(self.pairs)), "norm": f"{self.norm:.3f}"}
        if self.explained is not None:
            extra["explained variance"] = f"{self.explained:.1%}"
        return Figure(
            f"{self.model}: steering vector at {self.hook} ({self.method})",
            [
                Bars("each pair's difference along the vector", labels, self.pair_projections, "projection"),
                Bars("cosine of each pair's difference with the vector", labels, self.pair_cosines, "cosine"),
            ],
            **explanation(
                "steering_vector",
                hook=self.hook,
                where="the last token" if self.position == "last" else "averaged over tokens",
            ),
            extra=extra,
        )

    def save(self, name_or_path: str | Path) -> SteeringVector:
        """Write ``vector.safetensors`` + ``vector.json`` atomically; a bare name goes to the store.

        Returns the vector with its ``name`` and ``path`` set.
        """
        folder, name = resolve_vector_path(name_or_path, self.key)
        saved = replace(self, name=name, path=folder)
        with save(STEERING, self.key, name_or_path, summary=_summary(self)) as tmp:
            save_file({"vector": self.vector.float().contiguous()}, str(tmp / _WEIGHTS))
            meta = {k: v for k, v in saved.to_dict().items() if k != "path"}
            (tmp / _META).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        return saved

    def _json_format(self) -> int:
        return FORMAT

    def _json_pairs_count(self) -> int:
        return len(self.pairs)

    def _json_pairs(self) -> list[dict]:
        return [{"positive": p, "negative": n} for p, n in self.pairs]

    def _json_d_model(self) -> int:
        return int(self.vector.shape[0])

    def _json_explained_variance(self) -> float | None:
        return self.explained


def resolve_vector_path(name_or_path: str | Path, key: str) -> tuple[Path, str | None]:
    """(folder, name): a bare name (letters, digits, ``._-``) is ``store/steering/<key>/<name>``; else a path."""
    return locate(STEERING, key, name_or_path)


def _summary(vector: SteeringVector) -> dict:
    """What a listing of saved vectors shows without loading them."""
    return {"hook": vector.hook, "method": vector.method, "pairs": len(vector.pairs), "norm": vector.norm}


def vector_hook(model: Model, layer: int | None, hook: str | None) -> str:
    """The hook a vector lives at: ``hook`` as given, else ``blocks.{layer}.resid_pre``; residual-shaped only."""
    if hook is None:
        if layer is None:
            raise InputError("say where to read the vector: give a layer (e.g. --layer 6) or a hook name")
        if not 0 <= layer < model.n_layers:
            raise InputError(f"layer must be in 0..{model.n_layers - 1}, got {layer}")
        hook = f"blocks.{layer}.resid_pre"
    spec = model.hook_spec(hook)
    if spec.layout != "resid" or hook == "ln_final":
        raise InputError(
            f"'{hook}' does not carry the residual stream's d_model vectors; use blocks.L.resid_pre, resid_mid, "
            "resid_post, attn_out, mlp_out or embed"
        )
    return hook


def _stop_after(model: Model, hook: str) -> int:
    """stop_at_layer that still computes ``hook`` (nothing later)."""
    layer = model.hook_spec(hook).layer
    return 0 if layer is None else layer + 1


def _pair_activations(model: Model, pairs: Sequence[tuple[str, str]], hook: str, position: str) -> torch.Tensor:
    """[2, pairs, d_model] float64: positives then negatives, read at the last token or averaged over tokens."""
    prompts = [p for p, _ in pairs] + [n for _, n in pairs]
    run = model.run(prompts, cache=[hook], stop_at_layer=_stop_after(model, hook))
    acts = run.cache[hook].double().cpu()
    lengths = run.prompt_lengths.cpu()
    if position == "last":
        picked = acts[torch.arange(len(prompts)), lengths - 1]
    else:
        # BOS (position 0) is left out: it is the same in every prompt and an outlier attention sink.
        first = 1 if model.tokenizer.bos_token_id is not None else 0
        if int(lengths.min()) <= first:
            raise InputError("position='mean' needs at least one token after BOS in every prompt")
        mask = torch.arange(acts.shape[1])[None, :] < lengths[:, None]
        mask[:, :first] = False
        weights = mask.double()[:, :, None]
        picked = (acts * weights).sum(1) / weights.sum(1)
    return picked.reshape(2, len(pairs), -1)


def make_steering_vector(
    model: Model,
    pairs: Sequence[tuple[str, str]],
    *,
    layer: int | None = None,
    hook: str | None = None,
    method: Method = "caa",
    position: Literal["last", "mean"] = "last",
) -> SteeringVector:
    """A steering vector from contrastive ``(positive, negative)`` prompt pairs at ``hook``.

    ``hook`` defaults to ``blocks.{layer}.resid_pre`` (the residual stream entering block ``layer``).
    ``method``: ``caa`` (mean difference), ``actadd`` (one pair's difference) or ``pca`` (first principal
    direction of the differences). ``position``: ``last`` token of each prompt, or ``mean`` over its tokens.
    """
    pairs = [(str(p), str(n)) for p, n in pairs]
    if not pairs:
        raise InputError("give at least one (positive, negative) prompt pair")
    if method not in METHODS:
        raise InputError(f"method '{method}' is unknown; use {', '.join(METHODS)}")
    if position not in POSITIONS:
        raise InputError(f"position '{position}' is unknown; use 'last' or 'mean'")
    if method == "actadd" and len(pairs) != 1:
        raise InputError(f"actadd uses exactly one pair, got {len(pairs)}; give one pair or use caa / pca")
    if method == "pca" and len(pairs) < 2:
        raise InputError("pca needs at least two pairs (one pair has no spread); use actadd or caa")
    hook = vector_hook(model, layer, hook)
    positives, negatives = _pair_activations(model, pairs, hook, position)
    differences = positives - negatives  # [pairs, d_model]
    mean = differences.mean(0)
    explained = None
    if method == "pca":
        _, singular, right = torch.linalg.svd(differences, full_matrices=False)
        direction = right[0]
        along = float(mean @ direction)
        if along < 0:
            direction, along = -direction, -along
        vector = direction * along
        explained = float(singular[0] ** 2 / singular.pow(2).sum())
    else:
        vector = mean  # for actadd, the one pair's difference
    if not torch.isfinite(vector).all() or _negligible(vector, positives, negatives):
        raise InputError("the pairs give a zero or non-finite difference; use prompts that differ")
    unit = vector / vector.norm()
    projections = differences @ unit
    cosines = projections / differences.norm(dim=1).clamp_min(1e-12)
    return SteeringVector(
        model=model.name,
        key=model.key,
        hook=hook,
        method=method,
        position=position,
        pairs=pairs,
        vector=vector.float(),
        pair_projections=projections.tolist(),
        pair_cosines=cosines.tolist(),
        explained=explained,
    )


def _negligible(vector: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> bool:
    """Whether the vector is zero up to rounding: identical prompts run in different batch rows can differ
    in the last bits (rounding that grows through the layers, and differs between BLAS builds), so exact
    zero is not the test; a ten-thousandth of the activations' typical norm is far below any real
    difference (different prompts differ by a sizeable fraction of it)."""
    scale = float(torch.cat([positives, negatives]).float().norm(dim=-1).mean())
    return float(vector.norm()) <= _NEGLIGIBLE * scale


def load_steering_vector(model: Model, name_or_path: str | Path) -> SteeringVector:
    """The vector saved under ``name`` in the store (or at a folder), checked against ``model``."""
    key = model.key
    folder = resolve(STEERING, key, name_or_path)
    try:
        meta = json.loads((folder / _META).read_text(encoding="utf-8"))
        vector = load_file(str(folder / _WEIGHTS))["vector"].float()
        loaded = SteeringVector(
            model=str(meta["model"]),
            key=str(meta["key"]),
            hook=str(meta["hook"]),
            method=str(meta["method"]),
            position=str(meta["position"]),
            pairs=[(str(p["positive"]), str(p["negative"])) for p in meta["pairs"]],
            vector=vector,
            pair_projections=[float(x) for x in meta["pair_projections"]],
            pair_cosines=[float(x) for x in meta["pair_cosines"]],
            explained=None if meta.get("explained_variance") is None else float(meta["explained_variance"]),
            name=meta.get("name"),
            path=folder,
        )
        if meta.get("format") != FORMAT or vector.dim() != 1 or int(meta["d_model"]) != vector.shape[0]:
            raise ValueError("unexpected format or shape")
        if not torch.isfinite(vector).all() or not math.isclose(loaded.norm, float(meta["norm"]), rel_tol=1e-4):
            raise ValueError("the vector does not match its recorded norm")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputError(f"the steering vector at {folder} is unreadable ({reason}); make it again") from None
    if loaded.key != key:
        raise InputError(
            f"the steering vector at {folder} was made for {loaded.key}, not {key}; make one for this model"
        )
    if vector.shape[0] != model.d_model:
        raise InputError(f"the steering vector has d_model {vector.shape[0]} but {model.name} has {model.d_model}")
    try:
        vector_hook(model, None, loaded.hook)
    except GlasslabError as exc:
        raise InputError(f"the steering vector's hook does not fit {model.name}: {exc}") from None
    return loaded
