"""Commands of the lenses: logit-lens (declared in ``glasslab.operations.observe``: here how it reads), tuned-lens
train / info, lens-kl."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..methods.logit_lens import LogitLens, layer_label
from ..operations import OPERATIONS
from .app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OutOpt, app, emit, friendly_errors, load_model, out
from .derived import declare_command

tuned_app = typer.Typer(
    no_args_is_help=True,
    help="Train and inspect the tuned lens (per-layer translators; use it with: glasslab logit-lens --tuned).",
)
app.add_typer(tuned_app, name="tuned-lens")

LensPathOpt = Annotated[
    str | None, typer.Option("--lens", help="A tuned-lens folder (default: the one stored for the model).")
]
CorpusOpt = Annotated[
    str, typer.Option(help="'builtin' (offline English text), a .txt/.jsonl file or folder, or hf:NAME[:CONFIG].")
]


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


@tuned_app.command("train")
@friendly_errors
def train(
    corpus: CorpusOpt = "builtin",
    tokens: Annotated[int, typer.Option(help="Training tokens for the least-squares fit.")] = 200_000,
    seq_len: Annotated[int, typer.Option(help="Tokens per training sequence.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = 8,
    ridge: Annotated[float, typer.Option(help="Ridge strength, relative to the features' mean square.")] = 1e-3,
    kl_steps: Annotated[
        int,
        typer.Option(help="Then refine this many steps on the paper's KL objective (slow on a CPU: minutes per step)."),
    ] = 0,
    kl_lr: Annotated[float, typer.Option(help="Adam learning rate of the KL refinement.")] = 1e-3,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore the stored checkpoint and start over.")] = False,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Fit a tuned lens on a corpus's train split and save it to the store.

    Each translator is fitted in closed form (ridge regression from the layer's normalised residual to the
    last layer's), which is fast and resumable: interrupt it and run the same command again to continue, or
    ask for more --tokens to extend a finished fit. The paper (Belrose et al. 2023) trains on KL instead;
    --kl-steps adds that refinement. The saved lens says which objective made it.
    """
    from ..methods.tuned_lens import train_tuned_lens

    lens = train_tuned_lens(
        load_model(model, dtype, device),
        corpus,
        tokens=tokens,
        seq_len=seq_len,
        batch_size=batch_size,
        ridge=ridge,
        kl_steps=kl_steps,
        kl_lr=kl_lr,
        resume=not fresh,
    )
    emit(lens, as_json, None, lambda: _show_lens(lens.to_dict()))


@tuned_app.command("info")
@friendly_errors
def info(
    lens_path: LensPathOpt = None,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Describe the stored tuned lens: where it is and how it was trained."""
    from ..methods.tuned_lens import load_tuned_lens

    lens = load_tuned_lens(load_model(model, dtype, device), lens_path)
    emit(lens, as_json, None, lambda: _show_lens(lens.to_dict()))


def _show_lens(facts: dict) -> None:
    table = Table(title=escape(f"tuned lens for {facts['model']}"), show_header=False)
    for key in ("path", "objective", "translator", "tokens", "corpus", "seq_len", "ridge", "kl_steps", "n_layers"):
        table.add_row(key, escape(str(facts[key])))
    out.print(table)


@app.command("lens-kl")
@friendly_errors
def lens_kl(
    corpus: CorpusOpt = "builtin",
    split: Annotated[str, typer.Option(help="test (held out from training), train, or all.")] = "test",
    tokens: Annotated[int, typer.Option(help="About how many tokens to average over.")] = 4096,
    seq_len: Annotated[int, typer.Option(help="Tokens per sequence.")] = 128,
    logit_only: Annotated[bool, typer.Option("--logit-only", help="Skip the tuned lens.")] = False,
    lens_path: LensPathOpt = None,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
) -> None:
    """Per-layer KL(model output || lens) of the logit lens and the tuned lens on held-out text, in nats."""
    from ..errors import InputError
    from ..methods.logit_lens import layer_label
    from ..methods.tuned_lens import lens_kl as measure
    from ..methods.tuned_lens import load_tuned_lens

    if split not in ("test", "train", "all"):
        raise InputError(f"--split must be test, train or all, got '{split}'")
    loaded = load_model(model, dtype, device)
    lens = None if logit_only else load_tuned_lens(loaded, lens_path)
    result = measure(loaded, corpus, split=None if split == "all" else split, tokens=tokens, seq_len=seq_len, lens=lens)

    def show() -> None:
        table = Table(title=escape(f"KL(output || lens), nats, mean over {result.tokens:,} tokens of {result.corpus}"))
        for column in ("layer", "logit lens", "tuned lens"):
            table.add_column(column, justify="left" if column == "layer" else "right")
        for i, layer in enumerate(result.layers):
            tuned_kl = f"{result.tuned_lens[i]:.3f}" if result.tuned_lens is not None else "-"
            table.add_row(layer_label(layer), f"{result.logit_lens[i]:.3f}", tuned_kl)
        out.print(table)
        if result.tuned_note:
            out.print(escape(f"tuned lens: {result.tuned_note}"), highlight=False)

    emit(result, as_json, out_file, show)
