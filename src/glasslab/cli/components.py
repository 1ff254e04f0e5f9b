"""Commands that look at components: neuron and resid-norms (declared in ``glasslab.operations``: here only
how their results read; dla and neurons are declared too, in cli/observe.py)."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..methods.observe.neurons import NeuronProfile
from ..methods.observe.resid_stats import ResidNorms
from ..operations import OPERATIONS
from .app import out
from .derived import declare_command


def show_neuron(result: NeuronProfile) -> None:
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


declare_command(OPERATIONS["neuron"], show_neuron)


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
