"""Describing a loaded model: what it is (``info``) and which hooks it has (``hooks``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..methods.info import ModelInfo, info
from ..model.model import Model
from ..views.result import Result
from .options import Options
from .spec import OperationSpec


@dataclass(frozen=True)
class HookList(Result):
    """The model's hook names in forward order (``n_layers`` only labels the terminal's table)."""

    kind = "hooks"
    json_keys = ("model", "hooks")

    model: str
    hooks: list[str]
    n_layers: int


def hook_list(model: Model) -> HookList:
    """Every hook name ``model`` has (the names caches and interventions use)."""
    return HookList(model=model.name, hooks=model.hooks(), n_layers=model.n_layers)


class NoOptions(Options):
    """An operation that reads only the loaded model."""


GROUP = "model"
OPERATIONS = [
    OperationSpec(
        "info",
        NoOptions,
        info,
        ModelInfo,
        "Describe a model: family, layers, heads, widths, vocabulary, and where it is stored.",
        GROUP,
        # Its answer names the model's folder on this machine; the server describes its model without it
        # (GET /api/model).
        http=False,
    ),
    OperationSpec(
        "hooks",
        NoOptions,
        hook_list,
        HookList,
        "List the model's hook names (the names caches and interventions use) with their shapes.",
        GROUP,
    ),
]
