"""Every input-attribution method by name, and ``attribute``: one method on one prompt."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ...errors import InputError
from ...model.model import Model
from .attention_flow import attention_flow, attention_rollout, gradient_attention
from .faithfulness import LEVELS, MAX_POINTS, Faithfulness, measure
from .gradients import gradient_x_input, integrated_gradients, saliency
from .occlusion import occlusion
from .prepared import Prepared, prepare
from .result import InputAttribution, MethodOutput
from .shap import shapley_values


@dataclass(frozen=True)
class Options:
    """Method settings; each method reads the ones it uses."""

    steps: int = 64  # integrated gradients: quadrature points on the path
    rule: str = "gauss_legendre"  # integrated gradients: quadrature rule
    budget: int = 128  # SHAP: model evaluations
    seed: int = 0  # SHAP: order sampling
    window: int = 1  # occlusion: tokens removed together


@dataclass(frozen=True)
class MethodSpec:
    run: Callable[[Prepared, Options], MethodOutput]
    label: str
    short: str  # column header in narrow tables
    signed: bool
    about: str


METHODS: dict[str, MethodSpec] = {
    "saliency": MethodSpec(
        lambda p, o: saliency(p),
        "gradient saliency",
        "sal",
        False,
        "The size of the target's gradient with respect to each token's embedding: how sensitive the target "
        "is to small changes of the token.",
    ),
    "gradient_x_input": MethodSpec(
        lambda p, o: gradient_x_input(p),
        "gradient x input",
        "gxi",
        True,
        "Each token's embedding times the target's gradient there: a first-order estimate of its contribution.",
    ),
    "integrated_gradients": MethodSpec(
        lambda p, o: integrated_gradients(p, o.steps, o.rule),
        "integrated gradients",
        "ig",
        True,
        "The gradient averaged along a straight path from the baseline input to the prompt, times the change "
        "of each token's embedding; the scores add up to f(prompt) - f(baseline).",
    ),
    "shap": MethodSpec(
        lambda p, o: shapley_values(p, o.budget, o.seed),
        "SHAP (Shapley values)",
        "shap",
        True,
        "Each token's contribution averaged over all orders of adding the tokens to the baseline input; "
        "the scores add up to f(prompt) - f(baseline).",
    ),
    "occlusion": MethodSpec(
        lambda p, o: occlusion(p, o.window),
        "occlusion (leave one out)",
        "occl",
        True,
        "How much the target falls when the token alone is replaced by the baseline.",
    ),
    "attention_rollout": MethodSpec(
        lambda p, o: attention_rollout(p),
        "attention rollout",
        "roll",
        False,
        "The attention patterns of all layers (with the residual connection) multiplied through: how much "
        "of the last position's stream traces back to each token.",
    ),
    "attention_flow": MethodSpec(
        lambda p, o: attention_flow(p),
        "attention flow",
        "flow",
        False,
        "The maximum flow from each token to the last position through the layers' attention graph.",
    ),
    "gradient_attention": MethodSpec(
        lambda p, o: gradient_attention(p),
        "gradient-weighted attention",
        "gatt",
        False,
        "Attention weights times the target's gradient with respect to them (positive part), propagated "
        "through the layers: attention that matters for this target.",
    ),
}
ALIASES = {
    "grad": "saliency",
    "gradient": "saliency",
    "gxi": "gradient_x_input",
    "input_x_gradient": "gradient_x_input",
    "ig": "integrated_gradients",
    "shapley": "shap",
    "loo": "occlusion",
    "leave_one_out": "occlusion",
    "rollout": "attention_rollout",
    "flow": "attention_flow",
    "grad_attention": "gradient_attention",
    "attn_grad": "gradient_attention",
}


def method_names(methods: str | Sequence[str]) -> list[str]:
    """Canonical names for names, aliases or ``"all"`` (comma-separated text allowed), without repeats."""
    items = methods.split(",") if isinstance(methods, str) else list(methods)
    names: list[str] = []
    for item in (i.strip().lower().replace("-", "_") for i in items):
        if not item:
            continue
        chosen = list(METHODS) if item == "all" else [ALIASES.get(item, item)]
        for name in chosen:
            if name not in METHODS:
                choices = ", ".join([*METHODS, "all"])
                raise InputError(f"unknown attribution method '{item}'; choose from {choices}")
            if name not in names:
                names.append(name)
    if not names:
        raise InputError("no attribution method given; e.g. method='integrated_gradients' or 'all'")
    return names


def run_method(prep: Prepared, name: str, options: Options) -> InputAttribution:
    spec = METHODS[name]
    start = time.perf_counter()
    output = spec.run(prep, options)
    return InputAttribution(
        model=prep.model.name,
        prompt=prep.prompt,
        method=name,
        label=spec.label,
        about=spec.about,
        tokens=prep.tokens,
        positions=prep.positions,
        scores=[float(s) for s in output.scores],
        signed=spec.signed,
        target=prep.target.to_dict(prep.model),
        full_value=prep.full_value,
        baseline_value=prep.reference_value,
        baseline=prep.baseline,
        evaluations=output.evaluations,
        completeness_error=output.completeness_error,
        stderr=None if output.stderr is None else [float(e) for e in output.stderr],
        details=output.details,
        seconds=time.perf_counter() - start,
    )


def attribute(
    model: Model,
    prompt: str,
    method: str = "integrated_gradients",
    *,
    target: str | int | None = None,
    versus: str | int | None = None,
    kind: str | None = None,
    baseline: str = "pad",
    steps: int = 64,
    rule: str = "gauss_legendre",
    budget: int = 128,
    seed: int = 0,
    window: int = 1,
    batch_size: int | None = None,
) -> InputAttribution:
    """Which prompt tokens made the model predict ``target`` after the prompt, by one method.

    ``target``: token text (first token; include the leading space) or id; default the model's top
    prediction. ``kind``: ``logit`` (default), ``logprob``, ``prob``, or ``logit_diff`` (default when
    ``versus`` is given). ``baseline``: how a token is removed (see baselines.py). ``steps``/``rule``:
    integrated gradients; ``budget``/``seed``: SHAP; ``window``: occlusion. Methods: see ``METHODS``
    (aliases such as ``ig``, ``gxi``, ``rollout``, ``flow`` work).
    """
    names = method_names(method)
    if len(names) != 1:
        raise InputError("attribute takes one method; use compare_attributions for several")
    prep = prepare(model, prompt, target=target, versus=versus, kind=kind, baseline=baseline, batch_size=batch_size)
    return run_method(prep, names[0], Options(steps, rule, budget, seed, window))


def faithfulness(
    model: Model,
    attribution: InputAttribution,
    *,
    levels: Sequence[float] = LEVELS,
    max_points: int = MAX_POINTS,
    batch_size: int | None = None,
) -> Faithfulness:
    """Deletion/insertion curves and ERASER scores of an attribution, on its own prompt, target and baseline."""
    target = attribution.target
    prep = prepare(
        model,
        attribution.prompt,
        target=target["token_id"],
        versus=target["versus_id"],
        kind=target["kind"],
        baseline=attribution.baseline,
        batch_size=batch_size,
    )
    if prep.positions != attribution.positions:
        raise InputError("this attribution was made with another model or tokenizer; attribute again with this one")
    return measure(prep, torch.tensor(attribution.scores, dtype=torch.float64), levels=levels, max_points=max_points)
