"""``glasslab sae search``: find an SAE's features by words or meaning over their labels (offline)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import InputError
from .app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OutOpt, emit, friendly_errors, load_model, out
from .sae import AnyModelOpt, sae_app


@sae_app.command("search")
@friendly_errors
def sae_search_command(
    query: Annotated[str, typer.Argument(help="Words to look for, e.g. 'medical' or 'past tense'.")],
    sae: Annotated[
        str | None,
        typer.Option("--sae", "-s", help="An SAE name from glasslab sae list (default: the first on this machine)."),
    ] = None,
    top: Annotated[int, typer.Option(help="Features to show (1..100).")] = 20,
    exclude_dense: Annotated[
        bool, typer.Option("--exclude-dense", help="Skip features that fire on more than 10% of tokens.")
    ] = False,
    any_model: AnyModelOpt = False,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """The features whose labels best match QUERY, by their words and by meaning in the model's embeddings."""
    from ..dictionaries.catalog import available_saes
    from ..dictionaries.loading import load_sae
    from ..methods.features.search import search_features

    loaded = load_model(model, dtype, device)
    if sae is None:
        on_disk = [k.name for k in available_saes(loaded) if k.on_disk]
        if not on_disk:
            raise InputError(f"no SAE is on this machine for {loaded.name}; name one with --sae (glasslab sae list)")
        sae = on_disk[0]
    result = search_features(
        loaded, load_sae(sae, loaded, allow_other_model=any_model), query, top=top, exclude_dense=exclude_dense
    )

    def show() -> None:
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

    emit(result, as_json, out_file, show)
