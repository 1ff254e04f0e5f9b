"""``glasslab sae search``: find an SAE's features by words or meaning over their labels (offline), declared in
``glasslab.operations.features``: here only how its result reads."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..methods.features.search import FeatureSearch
from ..operations import OPERATIONS
from .app import out
from .derived import declare_command
from .sae import sae_app


def show_search(result: FeatureSearch) -> None:
    if not result.hits:
        out.print(f"no feature of {escape(result.sae)} matches {escape(repr(result.query))}", highlight=False)
        return
    table = Table(
        title=escape(f"features of {result.sae} matching {result.query!r}"),
        caption=f"{result.searched} labelled features searched; score = words + meaning",
    )
    for column in ("feature", "score", "words", "meaning", "why", "label"):
        table.add_column(column, justify="right" if column in ("feature", "score", "words", "meaning") else "left")
    for hit in result.hits:
        table.add_row(
            str(hit.feature),
            f"{hit.score:.2f}",
            f"{hit.lexical:.2f}",
            f"{hit.meaning:.2f}",
            escape("; ".join(hit.matched)),
            escape(hit.label),
        )
    out.print(table)


declare_command(OPERATIONS["sae-search"], show_search, on=sae_app, cli_name="search")
