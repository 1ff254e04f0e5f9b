"""``glasslab``: the command-line face. Each command calls one method and prints a table or ``--json``."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import GlasslabError

app = typer.Typer(
    name="glasslab",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Open a language model, look inside it and change it.",
)
out = Console()
err = Console(stderr=True)

ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Hub id, local folder or .gguf file (default: the offline Gemma 3 270M)."),
]
DtypeOpt = Annotated[str, typer.Option(help="float32, bfloat16, float16 or auto.")]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda, mps or auto.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of a table.")]

F = TypeVar("F", bound=Callable[..., None])


def friendly_errors(command: F) -> F:
    """Turn glasslab's errors into one line on stderr and exit status 2 (no traceback)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except GlasslabError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _load(model: str | None, dtype: str, device: str):
    from ..model.loading import load

    return load(model, dtype=dtype, device=device)


def _emit_json(result) -> None:
    sys.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")


@app.command()
@friendly_errors
def info(
    model: ModelOpt = None, dtype: DtypeOpt = "float32", device: DeviceOpt = "cpu", as_json: JsonOpt = False
) -> None:
    """Describe a model: family, layers, heads, widths, vocabulary, and where it is stored."""
    from ..methods.info import info as model_info

    result = model_info(_load(model, dtype, device))
    if as_json:
        return _emit_json(result)
    table = Table(title=escape(result.name), show_header=False)
    for key, value in result.rows():
        table.add_row(escape(key), escape(value))
    out.print(table)


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
) -> None:
    """Show the most likely next tokens with their probabilities and logits."""
    from ..methods.predict import predict as run_predict

    result = run_predict(_load(model, dtype, device), prompt, k=k, position=position, target=target)
    if as_json:
        return _emit_json(result)
    table = Table(
        title=escape(f"next token after {result.context_token!r} (position {result.position})"),
        caption=f"entropy {result.entropy_nats:.3f} nats",
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
    result = _load(model, dtype, device).generate(
        prompt,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
    )
    if as_json:
        return _emit_json(result)
    out.print(f"[bold]{escape(result.prompt)}[/]{escape(result.completion)}", highlight=False, markup=True)


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

    loaded = _load(model, dtype, device)
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


def main() -> None:
    app()
