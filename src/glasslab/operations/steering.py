"""Steering operations: make a steering vector from contrastive prompt pairs, and steer a continuation with a
saved vector (or one made on the fly) at one or several scales."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from ..errors import InputError
from ..methods.intervene.steering import Steering, SteeringVector, load_steering_vector, make_steering_vector, steer
from ..model.model import Model
from .options import (
    MAX_LIST,
    MAX_NEW_TOKENS,
    MAX_PAIRS,
    MAX_SCALES,
    Cli,
    Index,
    Options,
    Position,
    Prompt,
    PromptOptions,
    Seed,
    Token,
    VectorName,
)
from .spec import OperationSpec

Method = Literal["caa", "actadd", "pca"]
Pairs = Annotated[
    list[tuple[Prompt, Prompt]],
    Field(min_length=1, max_length=MAX_PAIRS),
    Cli(pair=("--positive", "--negative")),
]
Scale = Annotated[float, Field(ge=-1000.0, le=1000.0)]
MethodOption = Annotated[Method, Field(description="caa (mean difference), actadd (one pair) or pca.")]
LayerOption = Annotated[Index | None, Field(description="Read blocks.LAYER.resid_pre (the stream entering LAYER).")]


class MakeVectorOptions(Options):
    pairs: Annotated[Pairs, Field(description="(positive, negative) prompt pairs; the vector is their difference.")]
    layer: LayerOption = None
    hook: Annotated[
        str | None, Field(max_length=200, description="Or any residual hook, e.g. blocks.6.resid_post.")
    ] = None
    method: MethodOption = "caa"
    position: Annotated[
        Literal["last", "mean"], Field(description="last (each prompt's last token) or mean (over its tokens).")
    ] = "last"
    name: Annotated[
        str | None,
        Field(max_length=200, description="Save under this name in the store (locally also a folder path)."),
        Cli(("--save",)),
    ] = None


class SteerOptions(PromptOptions):
    vector: Annotated[
        str | None,
        Field(max_length=500, description="A saved vector's name (locally also its folder); or give pairs."),
        Cli(("--vector", "-v")),
    ] = None
    pairs: Annotated[Pairs | None, Field(description="Make the vector on the fly from these pairs (with layer).")] = (
        None
    )
    layer: LayerOption = None
    method: MethodOption = "caa"
    scales: Annotated[
        list[Scale],
        Field(min_length=1, max_length=MAX_SCALES, description="How many times the vector to add (several: a sweep)."),
        Cli(("--scale",)),
    ] = [4.0]  # noqa: RUF012 (pydantic copies defaults)
    max_new_tokens: Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS, description="Tokens to generate per text.")] = 30
    positions: Annotated[
        list[Position] | None,
        Field(max_length=MAX_LIST, description="Add only at these token positions (-1: the prompt's last)."),
        Cli(("--position", "-p")),
    ] = None
    positive_token: Annotated[
        Token | None, Field(description="Also score this token at the first new position (e.g. ' love').")
    ] = None
    negative_token: Annotated[Token | None, Field(description="...against this one (e.g. ' hate').")] = None
    temperature: Annotated[
        float, Field(ge=0.0, le=5.0, description="0 for greedy decoding; higher samples (same seed every row).")
    ] = 0.0
    seed: Annotated[Seed | None, Field(description="Random seed for sampling.")] = None


def make_vector(
    model: Model,
    pairs: Sequence[tuple[str, str]],
    *,
    layer: int | None = None,
    hook: str | None = None,
    method: Method = "caa",
    position: Literal["last", "mean"] = "last",
    name: str | None = None,
) -> SteeringVector:
    """``make_steering_vector``, saved under ``name`` (a store name, or a folder) when given."""
    vector = make_steering_vector(model, list(pairs), layer=layer, hook=hook, method=method, position=position)
    return vector.save(name) if name is not None else vector


def steer_with(
    model: Model,
    prompt: str,
    *,
    vector: str | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    layer: int | None = None,
    method: Method = "caa",
    scales: Sequence[float] = (4.0,),
    max_new_tokens: int = 30,
    positions: Sequence[int] | None = None,
    positive_token: str | None = None,
    negative_token: str | None = None,
    temperature: float = 0.0,
    seed: int | None = None,
) -> Steering:
    """``steer`` with a saved vector (by name or folder), or one made from ``pairs`` at ``layer``."""
    if (vector is None) == (pairs is None):
        raise InputError("give either vector (a saved vector's name) or pairs with a layer, not both")
    if vector is not None:
        chosen = load_steering_vector(model, vector)
    elif layer is None:
        raise InputError("layer: say at which layer to make the vector from the pairs")
    else:
        chosen = make_steering_vector(model, list(pairs), layer=layer, method=method)
    return steer(
        model,
        prompt,
        chosen,
        scales=list(scales),
        max_new_tokens=max_new_tokens,
        positions=positions,
        positive_token=positive_token,
        negative_token=negative_token,
        temperature=temperature,
        seed=seed,
    )


GROUP = "steering"
OPERATIONS = [
    OperationSpec(
        "steering-vector",
        MakeVectorOptions,
        make_vector,
        SteeringVector,
        "Build a steering vector from contrastive prompt pairs (positive minus negative activations).",
        GROUP,
        http_types=(("name", VectorName | None),),
    ),
    OperationSpec(
        "steer",
        SteerOptions,
        steer_with,
        Steering,
        "Continue a prompt without and with a steering vector added, at one scale or several (a sweep).",
        GROUP,
        long=True,
        http_types=(("vector", VectorName | None),),
    ),
]
