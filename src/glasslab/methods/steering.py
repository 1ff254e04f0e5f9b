"""Steering vectors: a direction in the residual stream, built from contrastive prompt pairs, added while generating.

Each pair is a positive and a negative prompt ("I love this" / "I hate this"). Both are run once, the hook's
activations are read at each prompt's last token (or averaged over its tokens, BOS left out), and the
pairwise differences ``positive - negative`` make the vector:

- ``caa``: their mean (contrastive activation addition, Rimsky et al. 2023, arXiv:2312.06681);
- ``actadd``: the difference of a single pair (activation addition, Turner et al. 2023, arXiv:2308.10248).
  The paper adds its difference at the first positions of the prompt; ``positions=`` selects those when applying;
- ``pca``: the first principal direction of the differences (representation engineering, Zou et al. 2023),
  oriented to agree with the mean difference and scaled to the mean difference's length along it.
  The differences are not centred: Zou et al. flip random pairs' order, which leaves ``D^T D`` unchanged and
  centres the cloud, so the top right singular vector of the stacked differences is that direction.

Applying it is ``gl.Add(hook, vector, scale, position=...)`` during generation. ``steer`` compares the baseline
continuation with steered ones at one or more scales and measures how far each text moved: (a) the mean
projection, onto the unit vector, of the hook's activations over the generated tokens in a clean re-run of the
text (no steering, so it measures the text, not the intervention), and (b) optionally the log-probabilities of two
contrast tokens at the first generated position under the steered model.

Store layout (``glasslab.store.STEERING``): ``steering/<model key>/<name>/`` holds ``vector.safetensors`` (the
float32 vector), ``vector.json`` (model, config hash, hook, method, pairs, norm) and the store's ``manifest.json``,
written atomically.
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

from ..errors import GlasslabError, InputError
from ..interventions import Add, Replace
from ..model.model import Model
from ..store import STEERING, locate, resolve, save
from ..views.explanations import explanation
from ..views.figures import Bars, Figure
from ..views.result import Record, Result

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


@dataclass(frozen=True)
class SteeredText(Record):
    """One continuation: ``scale`` None is the baseline (no intervention)."""

    scale: float | None
    completion: str
    new_tokens: list[str]
    projection: float | None  # mean over generated tokens of (activation . unit vector), clean re-run
    logprob_positive: float | None
    logprob_negative: float | None

    @property
    def label(self) -> str:
        return "baseline" if self.scale is None else f"scale {self.scale:g}"


@dataclass(frozen=True)
class Steering(Result):
    """Baseline and steered continuations of one prompt, with how far each moved along the vector."""

    kind = "steering"
    json_keys = (
        "model",
        "prompt",
        "vector",
        "positions",
        "temperature",
        "seed",
        "positive_token",
        "negative_token",
        "projection_measure",
        "logprob_measure",
        "baseline",
        "steered",
    )
    projection_measure = (
        "mean over generated tokens of the hook's activation . unit vector, in a clean re-run of the text "
        "without steering"
    )

    model: str
    prompt: str
    hook: str
    method: str
    vector_name: str | None
    vector_norm: float
    positions: list[int] | None  # where the vector was added (None: every prompt and generated token)
    temperature: float
    seed: int | None
    positive_token: str | None
    negative_token: str | None
    baseline: SteeredText
    steered: list[SteeredText]

    @property
    def rows(self) -> list[SteeredText]:
        return [self.baseline, *self.steered]

    def figure(self) -> Figure:
        rows = self.rows
        labels = [row.label for row in rows]
        panels = [
            Bars(
                "how far each text sits along the vector",
                labels,
                [row.projection if row.projection is not None else 0.0 for row in rows],
                "mean projection on the unit vector",
                hover=[f"{row.label}: {row.completion!r}" for row in rows],
            )
        ]
        if self.positive_token is not None:
            panels.append(
                Bars(
                    f"log p({self.positive_token!r}) - log p({self.negative_token!r}) at the first new token",
                    labels,
                    [row.logprob_positive - row.logprob_negative for row in rows],
                    "nats",
                    hover=[
                        f"{row.label}: log p(+)={row.logprob_positive:.3f}, log p(-)={row.logprob_negative:.3f}"
                        for row in rows
                    ],
                )
            )
        where = "every token" if self.positions is None else f"positions {self.positions}"
        return Figure(
            f"{self.model}: steering {self.prompt!r} along {self.vector_name or 'a vector'} ({self.method})",
            panels,
            **explanation("steering", hook=self.hook, where=where),
            extra={label: row.completion for label, row in zip(labels, rows, strict=True)},
        )

    def _json_vector(self) -> dict:
        return {"name": self.vector_name, "hook": self.hook, "method": self.method, "norm": self.vector_norm}

    def _json_logprob_measure(self) -> str | None:
        if self.positive_token is None:
            return None
        return "log-probability at the first generated position, under the steered model"


def steer(
    model: Model,
    prompt: str,
    vector: SteeringVector,
    *,
    scales: float | Sequence[float] = 4.0,
    max_new_tokens: int = 30,
    positions: int | Sequence[int] | None = None,
    positive_token: str | None = None,
    negative_token: str | None = None,
    temperature: float = 0.0,
    seed: int | None = None,
) -> Steering:
    """Continue ``prompt`` without steering and with ``scale * vector`` added at its hook, for each scale.

    ``positions``: absolute token positions to add at (negative: from the prompt's end); None adds at every
    prompt and generated token. ``positive_token``/``negative_token`` (together): also score the steered model's
    log-probability of each at the first generated position. Sampling (``temperature > 0``) uses ``seed`` for
    every row, so baseline and steered texts draw the same random numbers.
    """
    scale_list = [float(scales)] if isinstance(scales, int | float) else [float(s) for s in scales]
    if not scale_list:
        raise InputError("give at least one scale, e.g. 4 or 0,2,4,8")
    if not all(math.isfinite(s) for s in scale_list):
        raise InputError("scales must be finite numbers")
    if (positive_token is None) != (negative_token is None):
        raise InputError("give both a positive and a negative contrast token, or neither")
    if vector.vector.shape[0] != model.d_model or vector.key != model.key:
        raise InputError(f"this steering vector was made for {vector.key}, not {model.key}")
    position_list = None if positions is None else ([positions] if isinstance(positions, int) else list(positions))
    v = vector.vector

    def generate(scale: float | None):
        interventions = [] if scale is None else [Add(vector.hook, vector=v, scale=scale, position=position_list)]
        return model.generate(
            prompt, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, interventions=interventions
        )

    generations = [generate(scale) for scale in [None, *scale_list]]
    projections = _projections(model, vector, prompt, [g.completion for g in generations])
    logprobs: list[tuple[float | None, float | None]] = [(None, None)] * len(generations)
    if positive_token is not None:
        logprobs = _contrast_logprobs(
            model, vector, prompt, [0.0, *scale_list], position_list, positive_token, negative_token
        )
    rows = [
        SteeredText(scale, g.completion, g.new_tokens, projection, lp_pos, lp_neg)
        for scale, g, projection, (lp_pos, lp_neg) in zip(
            [None, *scale_list], generations, projections, logprobs, strict=True
        )
    ]
    return Steering(
        model=model.name,
        prompt=prompt,
        hook=vector.hook,
        method=vector.method,
        vector_name=vector.name,
        vector_norm=vector.norm,
        positions=position_list,
        temperature=temperature,
        seed=seed,
        positive_token=positive_token,
        negative_token=negative_token,
        baseline=rows[0],
        steered=rows[1:],
    )


def _projections(model: Model, vector: SteeringVector, prompt: str, completions: list[str]) -> list[float | None]:
    """Mean (activation . unit) over each completion's tokens, in one clean padded run of prompt + completion."""
    prompt_ids = model.to_tokens(prompt)[0].tolist()
    sequences = [prompt_ids + model.tokenizer(c, add_special_tokens=False)["input_ids"] for c in completions]
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), model.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    run = model.run(ids, attention_mask=mask, cache=[vector.hook], stop_at_layer=_stop_after(model, vector.hook))
    along = run.cache[vector.hook].float().cpu() @ vector.unit  # [batch, pos]
    start = len(prompt_ids)
    return [float(along[i, start : len(s)].mean()) if len(s) > start else None for i, s in enumerate(sequences)]


def _contrast_logprobs(
    model: Model,
    vector: SteeringVector,
    prompt: str,
    scales: list[float],
    positions: list[int] | None,
    positive: str,
    negative: str,
) -> list[tuple[float, float]]:
    """log p(positive), log p(negative) after the prompt, one row per scale, in one batched steered pass."""
    ids = model.to_tokens(prompt).repeat(len(scales), 1)
    factors = torch.tensor(scales)[:, None, None]
    v = vector.vector

    def add_per_row(act: torch.Tensor) -> torch.Tensor:
        return act + (factors.to(act.device) * v.to(act.device)).to(act.dtype)

    run = model.run(
        ids, cache=["ln_final"], logits=False, interventions=[Replace(vector.hook, fn=add_per_row, position=positions)]
    )
    last = ids.shape[1] - 1
    pos_id, neg_id = model.token_id(positive, "positive token"), model.token_id(negative, "negative token")
    out = []
    for row in range(len(scales)):
        log_probs = torch.log_softmax(model.logits_at(run, [last], row=row)[0].float(), dim=-1)
        out.append((float(log_probs[pos_id]), float(log_probs[neg_id])))
    return out
