"""Input attribution: a score per prompt token for the prediction, by one method or several side by side."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..methods.input_attribution import AttributionComparison, InputAttribution, attribute, compare_attributions
from ..methods.input_attribution.registry import method_names
from ..model.model import Model
from .options import MAX_BATCH, MAX_SEEDS, PromptOptions, Token
from .spec import OperationSpec


class AttributeOptions(PromptOptions):
    target: Annotated[
        Token | None, Field(description="The predicted token to explain (e.g. ' Paris'; default: the top prediction).")
    ] = None
    versus: Annotated[Token | None, Field(description="Explain logit(target) - logit(versus) instead.")] = None
    kind: Annotated[
        Literal["logit", "logprob", "prob", "logit_diff"] | None,
        Field(description="What is explained (default: logit_diff with versus, else logit)."),
    ] = None
    method: Annotated[
        str | None,
        Field(
            max_length=300,
            description="Comma-separated: saliency, gradient_x_input (gxi), integrated_gradients (ig), shap, "
            "occlusion, attention_rollout (rollout), attention_flow (flow), gradient_attention, or all "
            "(default: ig, or all with compare).",
        ),
    ] = None
    compare: Annotated[
        bool, Field(description="Rank the methods by faithfulness (deletion/insertion); implied by several methods.")
    ] = False
    baseline: Annotated[
        str, Field(max_length=200, description="A removed token becomes: pad, eos, zero, mean or token:TEXT.")
    ] = "pad"
    steps: Annotated[int, Field(ge=1, le=1024, description="Integrated gradients: points on the path.")] = 64
    rule: Annotated[
        Literal["gauss_legendre", "riemann_middle", "riemann_trapezoid"],
        Field(description="Integrated gradients: the quadrature rule."),
    ] = "gauss_legendre"
    budget: Annotated[int, Field(ge=1, le=65536, description="SHAP: model evaluations (exact when 2^tokens fits).")] = (
        128
    )
    seed: Annotated[int, Field(ge=0, le=MAX_SEEDS, description="SHAP orders and the random reference orders.")] = 0
    window: Annotated[int, Field(ge=1, le=64, description="Occlusion: tokens removed together.")] = 1
    batch_size: Annotated[
        int | None, Field(ge=1, le=MAX_BATCH, description="Inputs per forward pass (default: auto).")
    ] = None


def explain_inputs(
    model: Model,
    prompt: str,
    *,
    target: str | int | None = None,
    versus: str | int | None = None,
    kind: str | None = None,
    method: str | None = None,
    compare: bool = False,
    baseline: str = "pad",
    steps: int = 64,
    rule: str = "gauss_legendre",
    budget: int = 128,
    seed: int = 0,
    window: int = 1,
    batch_size: int | None = None,
) -> InputAttribution | AttributionComparison:
    """``attribute`` for one method, ``compare_attributions`` (ranked by faithfulness) for several or ``compare``."""
    names = method_names(method or ("all" if compare else "integrated_gradients"))
    options = dict(
        target=target,
        versus=versus,
        kind=kind,
        baseline=baseline,
        steps=steps,
        rule=rule,
        budget=budget,
        seed=seed,
        window=window,
        batch_size=batch_size,
    )
    if len(names) == 1 and not compare:
        return attribute(model, prompt, names[0], **options)
    return compare_attributions(model, prompt, names, **options)


OPERATIONS = [
    OperationSpec(
        "attribute",
        AttributeOptions,
        explain_inputs,
        InputAttribution,
        "Input attribution: a score per prompt token for the prediction, by one method or several side by side.",
        "attribution",
        long=True,
    ),
]
