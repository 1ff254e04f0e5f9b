"""Commands that look at components: neuron, and resid-norms (declared: here only how it reads; dla and
neurons are declared too, in cli/observe.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..methods.resid_stats import ResidNorms
from ..operations import OPERATIONS
from .app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OutOpt, app, emit, friendly_errors, load_model, out
from .derived import declare_command

PositionOpt = Annotated[int, typer.Option(help="Token position (-1: the last).")]
VersusOpt = Annotated[str | None, typer.Option(help="Decompose logit(target) - logit(versus) instead.")]


@app.command("neuron")
@friendly_errors
def neuron(
    layer: Annotated[int, typer.Argument(help="The neuron's layer.")],
    index: Annotated[int, typer.Argument(help="The neuron's index in the layer's MLP.")],
    corpus: Annotated[str, typer.Option(help="'builtin', a .txt/.jsonl file or folder, or hf:NAME.")] = "builtin",
    sequences: Annotated[int, typer.Option(help="How many sequences to scan.")] = 64,
    seq_len: Annotated[int, typer.Option(help="Tokens per sequence.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = 16,
    k: Annotated[int, typer.Option("-k", "--top-k", help="How many contexts to keep.")] = 10,
    window: Annotated[int, typer.Option(help="Tokens shown either side of the max token.")] = 8,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """One neuron: its top-activating contexts in a corpus and the tokens its output promotes and suppresses."""
    from ..methods.neurons import neuron_profile

    result = neuron_profile(
        load_model(model, dtype, device),
        layer,
        index,
        corpus=corpus,
        sequences=sequences,
        seq_len=seq_len,
        batch_size=batch_size,
        k=k,
        window=window,
    )

    def show() -> None:
        table = Table(
            title=escape(f"L{result.layer} N{result.neuron}: top contexts in {result.corpus}"),
            caption=f"{result.sequences} sequences, mean activation {result.mean_activation:.4f}",
        )
        for column in ("activation", "context (max token in [[ ]])"):
            table.add_column(column, justify="right" if column == "activation" else "left")
        for c in result.contexts:
            text = "".join(f"[[{t}]]" if i == c.centre else t for i, t in enumerate(c.tokens))
            table.add_row(f"{c.activation:.4f}", escape(repr(text)[1:-1]))
        out.print(table)
        note = " (direction only: post-norm model)" if result.post_norm else ""
        promotes = ", ".join(repr(t.token) for t in result.promotes)
        suppresses = ", ".join(repr(t.token) for t in result.suppresses)
        out.print(f"promotes{note}: {promotes}", highlight=False, markup=False)
        out.print(f"suppresses{note}: {suppresses}", highlight=False, markup=False)

    emit(result, as_json, out_file, show)


def show_resid_norms(result: ResidNorms) -> None:
    grid = Table(title="norm of resid_post (rows: layers, columns: positions)")
    grid.add_column("layer")
    for i, token in enumerate(result.tokens):
        grid.add_column(escape(f"{i} {token!r}"), justify="right")
    for layer, row in enumerate(result.norms["resid_post"]):
        grid.add_row(f"L{layer}", *(f"{v:.3g}" for v in row))
    out.print(grid)
    table = Table(title="largest norms relative to their layer's median")
    for column in ("kind", "position", "token", "peak layer", "norm", "x median", "largest in layers"):
        table.add_column(column, justify="left" if column in ("kind", "token", "largest in layers") else "right")
    for o in result.outliers:
        table.add_row(
            o.kind,
            str(o.position),
            escape(repr(o.token)),
            str(o.layer),
            f"{o.norm:.4g}",
            f"{o.ratio:.1f}",
            _ranges(o.largest_in),
        )
    out.print(table)


declare_command(OPERATIONS["resid-norms"], show_resid_norms)


def _ranges(layers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    parts: list[tuple[int, int]] = []
    for layer in layers:
        if parts and parts[-1][1] == layer - 1:
            parts[-1] = (parts[-1][0], layer)
        else:
            parts.append((layer, layer))
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in parts)
