"""Patching operations: activation patching (or its gradient estimate) and the circuit graph, both between a
clean and a corrupted prompt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from ..errors import InputError
from ..methods.patch.attribution_patching import AttributionPatching, attribution_patching
from ..methods.patch.circuit import Circuit, circuit
from ..methods.patch.patching import ActivationPatching, activation_patching
from ..model.model import Model
from .options import MAX_BATCH, MAX_LIST, Cli, Index, Metric, Options, Position, Prompt, Token
from .spec import OperationSpec

SITES = (
    "resid_pre",
    "resid_mid",
    "resid_post",
    "attn_out",
    "mlp_out",
    "attn.head_out",
    "attn.z",
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.pattern",
)
Site = Literal[SITES]  # type: ignore[valid-type]


def _patch_position(text: str, flag: str) -> int | str:
    if text in ("each", "all"):
        return text
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--{flag} must be a token position (e.g. -1), 'each' or 'all'; got '{text}'") from None


class PairOptions(Options):
    """Two prompts that differ in one detail, and the metric whose difference is traced."""

    clean: Annotated[Prompt, Field(description="The prompt where the model does the task."), Cli(argument=True)]
    corrupted: Annotated[Prompt, Field(description="The same prompt with one detail changed."), Cli(argument=True)]
    target: Annotated[
        Token | None, Field(description="The clean answer token (e.g. ' Mary'); loss and kl need none.")
    ] = None
    versus: Annotated[Token | None, Field(description="Measure logit(target) - logit(versus) (e.g. ' John').")] = None


class PatchOptions(PairOptions):
    metric: Annotated[Metric | None, Field(description="The metric (default: logit_diff with versus, else logit).")] = (
        None
    )
    site: Annotated[
        Site,
        Field(
            description="Where to patch: the residual stream and block outputs give a layer x position grid, the "
            "attn.* sites a layer x head grid."
        ),
    ] = "resid_pre"
    position: Annotated[
        Position | Literal["each", "all"] | None,
        Field(description="One position (e.g. -1), 'all' at once, or 'each' (default for layer x position sites)."),
        Cli(parse=_patch_position),
    ] = None
    layers: Annotated[
        list[Index] | None,
        Field(min_length=1, max_length=MAX_LIST, description="Only these layers (default: every layer)."),
        Cli(("--layer",)),
    ] = None
    noising: Annotated[bool, Field(description="Patch corrupted values into the clean run instead.")] = False
    align: Annotated[
        Literal["left", "right"] | None, Field(description="Prompts of different lengths: 'right' or 'left'.")
    ] = None
    attribution: Annotated[bool, Field(description="Gradient estimate (attribution patching), much faster.")] = False
    compare: Annotated[bool, Field(description="With attribution, also run real patching and correlate.")] = False
    batch_size: Annotated[
        int | None, Field(ge=1, le=MAX_BATCH, description="Patched runs per forward pass (default: auto).")
    ] = None


class CircuitOptions(PairOptions):
    metric: Annotated[Metric, Field(description="The metric the components are ranked by.")] = "logit_diff"
    position: Annotated[Position, Field(description="Position whose prediction the metric reads (-1: the last).")] = -1
    top: Annotated[int, Field(ge=1, le=50, description="How many heads and MLPs to keep.")] = 10
    threshold: Annotated[
        float | None, Field(ge=0.0, le=1e6, description="Keep only components moving at least this share.")
    ] = None
    head_edges: Annotated[bool, Field(description="Also measure paths between kept heads (q, k, v).")] = False
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH, description="Patched runs per forward pass.")] = 64


def patch(
    model: Model,
    clean: str,
    corrupted: str,
    *,
    target: str | int | None = None,
    versus: str | int | None = None,
    metric: str | None = None,
    site: str = "resid_pre",
    position: int | str | None = None,
    layers: Sequence[int] | None = None,
    noising: bool = False,
    align: Literal["left", "right"] | None = None,
    attribution: bool = False,
    compare: bool = False,
    batch_size: int | None = None,
) -> ActivationPatching | AttributionPatching:
    """Activation patching, or with ``attribution`` its first-order estimate (``compare``: beside the real one)."""
    options = dict(
        target=target,
        versus=versus,
        metric=metric,
        site=site,
        position=position,
        layers=layers,
        noising=noising,
        align=align,
        batch_size=batch_size,
    )
    if attribution:
        return attribution_patching(model, clean, corrupted, compare=compare, **options)
    if compare:
        raise InputError("compare correlates attribution patching with real patching: also pass attribution")
    return activation_patching(model, clean, corrupted, **options)


GROUP = "interventions"
OPERATIONS = [
    OperationSpec(
        "patch",
        PatchOptions,
        patch,
        ActivationPatching,
        "Activation patching: which layers, positions or heads carry the difference between two prompts.",
        GROUP,
        long=True,
    ),
    OperationSpec(
        "circuit",
        CircuitOptions,
        circuit,
        Circuit,
        "The components that matter most for the metric, and the measured paths from them to the logits.",
        GROUP,
        long=True,
    ),
]
