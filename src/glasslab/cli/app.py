"""The Typer app and what every command shares: model options, one-line errors, ``--json`` and ``--out``."""

from __future__ import annotations

import functools
import json
import math
import sys
import typing
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import GlasslabError, InputError

if typing.TYPE_CHECKING:
    from ..model.model import Model

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
# Offload (docs/offload.md): either one lets accelerate place the model (device_map="auto"), so --device is not used.
MaxMemoryOpt = Annotated[
    str | None,
    typer.Option(
        "--max-memory",
        help="Spread the model: the most each device holds, e.g. cpu=8GiB,0=20GiB (one size alone: the CPU's); "
        "what does not fit is read from disk as it runs (slower).",
    ),
]
OffloadFolderOpt = Annotated[
    str | None,
    typer.Option(
        "--offload-folder",
        help="Spread the model, writing weights offloaded to disk here when they cannot be read in place.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of a table.")]

F = TypeVar("F", bound=Callable[..., None])


def friendly_errors(command: F) -> F:
    """Turn glasslab's errors into one line on stderr and exit status 2 (no traceback)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            _check_finite(command, kwargs)
            return command(*args, **kwargs)
        except GlasslabError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _check_finite(command: Callable[..., None], values: dict[str, object]) -> None:
    """Refuse nan and +-inf in every number given on the command line, once for all commands (as the
    HTTP API does): the float type accepts them, and a nan temperature or scale silently poisons a run."""
    for name, value in values.items():
        items = value if isinstance(value, list | tuple) else [value]
        bad = next((item for item in items if isinstance(item, float) and not math.isfinite(item)), None)
        if bad is not None:
            raise InputError(f"{flag_of(command, name)} must be a finite number, not {bad}")


def flag_of(command: Callable[..., None], name: str) -> str:
    """How the user wrote parameter ``name`` of ``command``: its longest declared flag, else --the-name."""
    try:
        hint = typing.get_type_hints(command, include_extras=True).get(name)
    except (NameError, TypeError):
        hint = None
    return flag_from_hint(hint, name)


def flag_from_hint(hint: object, name: str) -> str:
    """The longest ``--flag`` a typer annotation declares for parameter ``name``; NAME for an argument."""
    for info in getattr(hint, "__metadata__", ()):
        if isinstance(info, typer.models.ArgumentInfo):
            return name.upper()
        # In ``Annotated``, typer keeps an option's first flag in ``default`` and the others in ``param_decls``.
        declared = (getattr(info, "default", None), *(getattr(info, "param_decls", None) or ()))
        decls = [decl for decl in declared if isinstance(decl, str) and decl.startswith("--")]
        if decls:
            return max(decls, key=len)
    return "--" + name.replace("_", "-")


OutOpt = Annotated[
    str | None, typer.Option("--out", "-o", help="Also write the result: .html (interactive), .png, .svg or .json.")
]


# Options of the causal commands (ablate, patch, path-patch, circuit): what the effect is measured by.
TargetOpt = Annotated[
    str | None, typer.Option(help="The token the metric reads (e.g. ' Mary'); loss and kl need none.")
]
VersusOpt = Annotated[str | None, typer.Option(help="Measure logit(target) - logit(versus) (e.g. ' John').")]
MetricOpt = Annotated[
    str | None,
    typer.Option(help="logit, logit_diff, prob, loss or kl (default: logit_diff with --versus, else logit)."),
]
MetricPositionOpt = Annotated[int, typer.Option(help="Position whose prediction the metric reads (-1: the last).")]


def parse_layer_index(text: str, flag: str, unit: str = "INDEX") -> tuple[int, int]:
    """'9.1' -> (9, 1) for --head/--neuron/--senders values, with a one-line error naming the flag."""
    layer, dot, index = text.strip().partition(".")
    if not (dot and layer.isdigit() and index.isdigit()):
        raise InputError(f"--{flag} takes LAYER.{unit}, e.g. 9.1; got '{text}'")
    return int(layer), int(index)


def parse_numbers(text: str, flag: str, example: str) -> list[float]:
    """'0,2,4' -> [0.0, 2.0, 4.0] for comma-separated options, finite only (like every float option)."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--{flag} must be comma-separated numbers like {example}; got '{text}'") from None
    bad = next((value for value in values if not math.isfinite(value)), None)
    if bad is not None:
        raise InputError(f"--{flag} must be finite numbers, not {bad}")
    return values


def load_model(
    model: str | None, dtype: str, device: str, max_memory: str | None = None, offload_folder: str | None = None
) -> Model:
    """The model as --model, --dtype and --device name it; spread by accelerate (``device_map="auto"``) when
    --max-memory or --offload-folder is given."""
    from ..model.loading import load
    from ..model.offload import parse_max_memory

    if max_memory is None and offload_folder is None:
        return load(model, dtype=dtype, device=device)
    budget = parse_max_memory(max_memory) if max_memory is not None else None
    return load(model, dtype=dtype, device_map="auto", max_memory=budget, offload_folder=offload_folder)


def emit(result, as_json: bool, out_file: str | None, show: Callable[[], None]) -> None:
    """Write ``--out`` if asked, then print JSON (``--json``) or the readable view (``show``)."""
    if out_file:
        from ..views.export import write_result

        written = write_result(result, out_file)
        err.print(f"wrote {escape(str(written))}", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        show()
