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

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...errors import InputError
from ...interventions import Add, Replace
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Bars, Figure
from ...views.result import Record, Result
from .steering_vectors import (  # also re-exported: defined here before the vectors got their own module
    FORMAT,  # noqa: F401
    METHODS,  # noqa: F401
    POSITIONS,  # noqa: F401
    Method,  # noqa: F401
    SteeringVector,
    _stop_after,
    load_steering_vector,  # noqa: F401
    make_steering_vector,  # noqa: F401
    resolve_vector_path,  # noqa: F401
    vector_hook,  # noqa: F401
)


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
