"""Commands of the lenses: logit-lens, tuned-lens train / info and lens-kl (declared in
``glasslab.operations.observe`` and ``.lenses``: here only how their results read)."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from ..methods.lenses.logit_lens import LogitLens, layer_label
from ..methods.lenses.tuned_lens import LensKL, TunedLens
from ..operations import OPERATIONS
from .app import app, out
from .derived import declare_command

tuned_app = typer.Typer(
    no_args_is_help=True,
    help="Train and inspect the tuned lens (per-layer translators; use it with: glasslab logit-lens --tuned).",
)
app.add_typer(tuned_app, name="tuned-lens")


def show_lens(result: LogitLens) -> None:
    caption = "cell: top token and its probability"
    if result.target:
        caption = f"cell: top token · p({result.target.token!r})"
    table = Table(title=escape(f"{result.lens}: what each layer predicts next"), caption=escape(caption))
    table.add_column("layer", no_wrap=True)
    for p in result.positions:
        table.add_column(escape(f"{p} {result.tokens[p]!r}"))
    for i in reversed(range(len(result.layers))):
        cells = []
        for j in range(len(result.positions)):
            best = result.top[i][j][0]
            extra = f"{result.target_probability[i][j]:.3f}" if result.target_probability else f"{best.probability:.2f}"
            cells.append(escape(f"{best.token!r} {extra}"))
        table.add_row(layer_label(result.layers[i]), *cells)
    out.print(table)
    if result.lens_note:
        out.print(escape(f"tuned lens: {result.lens_note}"), highlight=False)


declare_command(OPERATIONS["logit-lens"], show_lens)


def show_tuned_lens(lens: TunedLens) -> None:
    facts = lens.to_dict()
    table = Table(title=escape(f"tuned lens for {facts['model']}"), show_header=False)
    for key in ("path", "objective", "translator", "tokens", "corpus", "seq_len", "ridge", "kl_steps", "n_layers"):
        table.add_row(key, escape(str(facts[key])))
    out.print(table)


def show_lens_kl(result: LensKL) -> None:
    table = Table(title=escape(f"KL(output || lens), nats, mean over {result.tokens:,} tokens of {result.corpus}"))
    for column in ("layer", "logit lens", "tuned lens"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for i, layer in enumerate(result.layers):
        tuned_kl = f"{result.tuned_lens[i]:.3f}" if result.tuned_lens is not None else "-"
        table.add_row(layer_label(layer), f"{result.logit_lens[i]:.3f}", tuned_kl)
    out.print(table)
    if result.tuned_note:
        out.print(escape(f"tuned lens: {result.tuned_note}"), highlight=False)


TRAIN_HELP = """Each translator is fitted in closed form (ridge regression from the layer's normalised residual to
the last layer's), which is fast and resumable: interrupt it and run the same command again to continue, or
ask for more --tokens to extend a finished fit. --cluster local|auto|ADDRESS [--workers N] sums over the
corpus on Ray workers (checkpointed after whole units of 8 batches). The paper (Belrose et al. 2023) trains
on KL instead; --kl-steps adds that refinement, always in this process. The saved lens says which objective
made it."""
declare_command(OPERATIONS["tuned-lens-train"], show_tuned_lens, on=tuned_app, cli_name="train", more_help=TRAIN_HELP)
declare_command(OPERATIONS["tuned-lens-info"], show_tuned_lens, on=tuned_app, cli_name="info")
declare_command(OPERATIONS["lens-kl"], show_lens_kl)
