"""Commands of the foundation: info, hooks and tokens, declared in ``glasslab.operations.describe``: here only how
their results read (predict and generate are declared operations too: observe.py)."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..methods.observe.info import ModelInfo
from ..model.hooks import BLOCK_SITES, GLOBAL_SITES
from ..operations import OPERATIONS
from ..operations.describe import HookList, TokenStrip
from .app import out
from .derived import declare_command


def show_info(result: ModelInfo) -> None:
    table = Table(title=escape(result.name), show_header=False)
    for key, value in result.rows():
        table.add_row(escape(key), escape(value))
    out.print(table)


def show_hooks(result: HookList) -> None:
    names = result.hooks
    table = Table(title=escape(f"{result.model}: {len(names)} hooks ({{L}} = 0..{result.n_layers - 1})"))
    table.add_column("name")
    table.add_column("shape and meaning")
    for name, (_, doc) in GLOBAL_SITES.items():
        if name != "ln_final" and name != "logits":
            table.add_row(name, escape(doc))
    for site, (_, doc) in BLOCK_SITES.items():
        if f"blocks.0.{site}" in names:
            table.add_row(f"blocks.{{L}}.{site}", escape(doc))
    for name in ("ln_final", "logits"):
        table.add_row(name, escape(GLOBAL_SITES[name][1]))
    out.print(table)


declare_command(OPERATIONS["info"], show_info)


def show_tokens(result: TokenStrip) -> None:
    table = Table(title=escape(f"{result.model}: {len(result.tokens)} tokens"))
    for column in ("pos", "token", "id"):
        table.add_column(column, justify="left" if column == "token" else "right")
    for piece in result.tokens:
        table.add_row(str(piece.position), escape(repr(piece.token)), str(piece.token_id))
    out.print(table)


declare_command(OPERATIONS["hooks"], show_hooks)
declare_command(OPERATIONS["tokens"], show_tokens)
