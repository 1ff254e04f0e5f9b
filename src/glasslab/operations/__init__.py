"""Operations declared once (function, options, result), from which the CLI and the HTTP API are built.

Adding a method to every face is one ``OperationSpec`` in a group module here plus the function; the CLI
command and the HTTP endpoint follow (see docs/architecture.md).
"""

from __future__ import annotations

from ..errors import InputError
from . import (
    attribute,
    circuits,
    compare,
    components,
    describe,
    edit,
    feature_files,
    features,
    graphs,
    intervene,
    lenses,
    observe,
    patching,
    probing,
    sae_training,
    scale,
    steering,
    transcoder_features,
    transcoders,
)
from .options import Cli, Options, PromptOptions
from .spec import OperationSpec

GROUPS = (
    describe,
    observe,
    lenses,
    components,
    intervene,
    patching,
    circuits,
    graphs,
    steering,
    attribute,
    edit,
    probing,
    compare,
    features,
    feature_files,
    sae_training,
    transcoders,
    transcoder_features,
    scale,
)
OPERATIONS: dict[str, OperationSpec] = {spec.name: spec for group in GROUPS for spec in group.OPERATIONS}


def operation(name: str) -> OperationSpec:
    """The declared operation called ``name``, or a one-line error naming the known ones."""
    try:
        return OPERATIONS[name]
    except KeyError:
        raise InputError(f"no operation '{name}'; known: {', '.join(sorted(OPERATIONS))}") from None


__all__ = ["OPERATIONS", "Cli", "OperationSpec", "Options", "PromptOptions", "operation"]
