"""Path patching: each sender head's effect on a metric through chosen receivers only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from ..errors import InputError
from ..methods.patch.path_patching import LOGITS, PathPatching, path_patching
from ..model.model import Model
from .options import MAX_LIST, Cli, HeadRef, Metric, Position, parse_layer_index, parse_list
from .patching import PairOptions
from .spec import OperationSpec

Receiver = Annotated[str, Field(min_length=1, max_length=50)]


def _senders(text: str, flag: str) -> list[tuple[int, int]]:
    """'9.1,10.0' -> [(9, 1), (10, 0)], as --senders has always been written."""
    if not text.strip(" ,"):
        raise InputError(f"--{flag} is empty; write heads as LAYER.HEAD, e.g. 9.1,10.0")
    return parse_list(text, flag, lambda part, name: parse_layer_index(part, name, "HEAD"))


class PathPatchOptions(PairOptions):
    senders: Annotated[
        list[HeadRef] | None,
        Field(
            min_length=1,
            max_length=MAX_LIST,
            description="Sender heads (9.1,10.0 on the command line; default: every head, each alone).",
        ),
        Cli(parse=_senders, whole=True),
    ] = None
    receivers: Annotated[
        list[Receiver],
        Field(
            min_length=1, max_length=MAX_LIST, description="logits, or head inputs LAYER.HEAD.q|k|v (default: logits)."
        ),
        Cli(parse=parse_list, whole=True),
    ] = [LOGITS]  # noqa: RUF012 (pydantic copies defaults)
    together: Annotated[bool, Field(description="Patch all senders together (one row) instead of each alone.")] = False
    metric: Annotated[Metric, Field(description="logit, logit_diff, prob, loss or kl.")] = "logit_diff"
    position: Annotated[Position, Field(description="Position whose prediction the metric reads (-1: the last).")] = -1
    denoising: Annotated[bool, Field(description="Run the corrupted prompt and take senders from the clean one.")] = (
        False
    )
    freeze_mlps: Annotated[bool, Field(description="Freeze MLPs too (only head paths remain).")] = False


def patch_paths(
    model: Model,
    clean: str,
    corrupted: str,
    *,
    target: str | int | None = None,
    versus: str | int | None = None,
    senders: Sequence[tuple[int, int]] | None = None,
    receivers: Sequence[str] = (LOGITS,),
    together: bool = False,
    metric: str = "logit_diff",
    position: int = -1,
    denoising: bool = False,
    freeze_mlps: bool = False,
) -> PathPatching:
    """``path_patching`` with each sender alone, or all together (one row) when ``together``."""
    sets = [list(senders)] if together and senders is not None else senders
    return path_patching(
        model,
        clean,
        corrupted,
        senders=sets,
        receivers=list(receivers),
        metric=metric,
        target=target,
        versus=versus,
        position=position,
        direction="denoising" if denoising else "noising",
        freeze_mlps=freeze_mlps,
    )


OPERATIONS = [
    OperationSpec(
        "path-patch",
        PathPatchOptions,
        patch_paths,
        PathPatching,
        "Path patching: each sender head's effect on the metric through the receivers only.",
        "circuits",
        long=True,
    ),
]
