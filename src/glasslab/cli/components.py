"""Commands that look at components: dla, neurons, neuron, resid-norms."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OutOpt, app, emit, friendly_errors, load_model, out

PositionOpt = Annotated[int, typer.Option(help="Token position (-1: the last).")]
VersusOpt = Annotated[str | None, typer.Option(help="Decompose logit(target) - logit(versus) instead.")]


@app.command("dla")
@friendly_errors
def dla(
    prompt: Annotated[str, typer.Argument(help="The text to analyse.")],
    target: Annotated[str, typer.Option(help="The token whose logit to decompose (e.g. ' Paris').")],
    versus: VersusOpt = None,
    position: PositionOpt = -1,
    neurons: Annotated[int, typer.Option(help="How many top neurons to list.")] = 10,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Direct logit attribution: each layer's, head's and neuron's direct share of a logit (difference)."""
    from ..methods.dla import logit_attribution

    result = logit_attribution(
        load_model(model, dtype, device), prompt, target=target, versus=versus, position=position, top_neurons=neurons
    )

    def show() -> None:
        cap = " before the final soft-cap" if result.softcapped else ""
        table = Table(
            title=escape(
                f"direct shares of {result.metric} after {result.context_token!r} (position {result.position})"
            ),
            caption=escape(
                f"sum of shares {result.total:.4f} = decomposed value{cap} {result.normalised_logit:.4f} "
                f"(error {result.error:.2g}); model's value {result.logit:.4f}"
            ),
        )
        for column in ("component", "attention", "MLP", "cumulative", "top heads"):
            table.add_column(column, justify="left" if column in ("component", "top heads") else "right")
        table.add_row("embed", "", "", f"{result.embed:+.4f}", "")
        for layer, (a, m, c, heads) in enumerate(
            zip(result.attn, result.mlp, result.cumulative, result.heads, strict=True)
        ):
            best = sorted(range(len(heads)), key=lambda h: -abs(heads[h]))[:3]
            table.add_row(
                f"L{layer}", f"{a:+.4f}", f"{m:+.4f}", f"{c:+.4f}", ", ".join(f"H{h} {heads[h]:+.3f}" for h in best)
            )
        for name, value in result.constants.items():
            table.add_row(escape(name), "", "", f"{value:+.4f}", "")
        out.print(table)
        if result.top_neurons:
            neurons_table = Table(title="neurons with the largest direct shares")
            for column in ("neuron", "activation", "per unit", "share"):
                neurons_table.add_column(column, justify="right")
            for n in result.top_neurons:
                neurons_table.add_row(
                    f"L{n.layer} N{n.neuron}", f"{n.activation:.4f}", f"{n.per_unit:+.4f}", f"{n.contribution:+.4f}"
                )
            out.print(neurons_table)

    emit(result, as_json, out_file, show)


@app.command("neurons")
@friendly_errors
def neurons(
    prompt: Annotated[str, typer.Argument(help="The text to analyse.")],
    layer: Annotated[int | None, typer.Option(help="Only this layer (default: rank over all layers).")] = None,
    top: Annotated[int, typer.Option(help="How many neurons to list.")] = 10,
    target: Annotated[str | None, typer.Option(help="Also rank by direct share of this token's logit.")] = None,
    versus: VersusOpt = None,
    position: PositionOpt = -1,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """The most active MLP neurons at a position, and the ones that push a target logit most directly."""
    from ..methods.neurons import top_neurons

    result = top_neurons(
        load_model(model, dtype, device), prompt, position=position, layer=layer, top=top, target=target, versus=versus
    )

    def show() -> None:
        where = f"layer {result.layer}" if result.layer is not None else "all layers"
        for title, rows in (
            (f"most active neurons after {result.context_token!r} ({where})", result.most_active),
            (f"largest direct shares of {result.metric}", result.most_relevant),
        ):
            if not rows:
                continue
            table = Table(title=escape(title))
            for column in ("neuron", "activation", "share"):
                table.add_column(column, justify="right")
            for s in rows:
                share = "" if s.contribution is None else f"{s.contribution:+.4f}"
                table.add_row(f"L{s.layer} N{s.neuron}", f"{s.activation:.4f}", share)
            out.print(table)

    emit(result, as_json, out_file, show)


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


@app.command("resid-norms")
@friendly_errors
def resid_norms(
    prompt: Annotated[str, typer.Argument(help="The text to analyse.")],
    top: Annotated[int, typer.Option(help="How many outliers to list.")] = 10,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Norms of the residual stream and of each attention/MLP write, per layer and position, with outliers."""
    from ..methods.resid_stats import resid_norms as run_norms

    result = run_norms(load_model(model, dtype, device), prompt, top=top)

    def show() -> None:
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

    emit(result, as_json, out_file, show)


def _ranges(layers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    parts: list[tuple[int, int]] = []
    for layer in layers:
        if parts and parts[-1][1] == layer - 1:
            parts[-1] = (parts[-1][0], layer)
        else:
            parts.append((layer, layer))
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in parts)
