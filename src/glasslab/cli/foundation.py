"""Commands of the foundation: info, predict, generate, hooks."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, OutOpt, app, emit, friendly_errors, load_model, out


@app.command()
@friendly_errors
def info(
    model: ModelOpt = None, dtype: DtypeOpt = "float32", device: DeviceOpt = "cpu", as_json: JsonOpt = False
) -> None:
    """Describe a model: family, layers, heads, widths, vocabulary, and where it is stored."""
    from ..methods.info import info as model_info

    result = model_info(load_model(model, dtype, device))

    def show() -> None:
        table = Table(title=escape(result.name), show_header=False)
        for key, value in result.rows():
            table.add_row(escape(key), escape(value))
        out.print(table)

    emit(result, as_json, None, show)


@app.command()
@friendly_errors
def predict(
    prompt: Annotated[str, typer.Argument(help="The text whose next token to predict.")],
    k: Annotated[int, typer.Option("-k", "--top-k", help="How many top tokens to show.")] = 10,
    target: Annotated[str | None, typer.Option(help="Also score this token (e.g. ' Paris').")] = None,
    position: Annotated[int, typer.Option(help="Predict after this token (-1: the last).")] = -1,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    out_file: OutOpt = None,
    losses: Annotated[bool, typer.Option("--losses", help="Also print each token's loss (surprise).")] = False,
) -> None:
    """Show the most likely next tokens with their probabilities and logits, and each token's loss."""
    from ..methods.predict import predict as run_predict

    result = run_predict(load_model(model, dtype, device), prompt, k=k, position=position, target=target)

    def show() -> None:
        table = Table(
            title=escape(f"next token after {result.context_token!r} (position {result.position})"),
            caption=f"entropy {result.entropy_nats:.3f} nats · mean loss of the text {result.mean_loss:.3f} nats",
        )
        for column in ("rank", "token", "probability", "logit"):
            table.add_column(column, justify="left" if column == "token" else "right")
        for s in result.top:
            table.add_row(str(s.rank), escape(repr(s.token)), f"{s.probability:.4f}", f"{s.logit:.3f}")
        out.print(table)
        if result.target:
            t = result.target
            out.print(
                f"target {t.token!r}: rank {t.rank}, probability {t.probability:.4g}, logit {t.logit:.3f}",
                highlight=False,
                markup=False,
            )
        if losses:
            loss_table = Table(title="loss of each token given the ones before it (nats)")
            for column in ("position", "token", "loss"):
                loss_table.add_column(column)
            for item in result.token_losses:
                loss_table.add_row(str(item.position), escape(repr(item.token)), f"{item.loss:.3f}")
            out.print(loss_table)

    emit(result, as_json, out_file, show)


@app.command()
@friendly_errors
def generate(
    prompt: Annotated[str, typer.Argument(help="The text to continue.")],
    max_new_tokens: Annotated[int, typer.Option(help="How many tokens to add.")] = 30,
    temperature: Annotated[float, typer.Option(help="0 for greedy decoding; higher samples more freely.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling threshold (with --temperature > 0).")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Random seed, for repeatable sampling.")] = None,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Continue a prompt, greedily or by sampling."""
    result = load_model(model, dtype, device).generate(
        prompt,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
    )
    emit(
        result,
        as_json,
        None,
        lambda: out.print(f"[bold]{escape(result.prompt)}[/]{escape(result.completion)}", highlight=False),
    )


@app.command()
@friendly_errors
def hooks(
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """List the model's hook names (the names caches and interventions use) with their shapes."""
    from ..model.hooks import BLOCK_SITES, GLOBAL_SITES

    loaded = load_model(model, dtype, device)
    names = loaded.hooks()
    if as_json:
        sys.stdout.write(json.dumps({"kind": "hooks", "model": loaded.name, "hooks": names}, indent=2) + "\n")
        return
    table = Table(title=escape(f"{loaded.name}: {len(names)} hooks ({{L}} = 0..{loaded.n_layers - 1})"))
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
