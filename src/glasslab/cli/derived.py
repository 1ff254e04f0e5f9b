"""CLI commands built from declared operations: each option of the declaration becomes a flag with its type,
default, help text and choices; the command validates them as the HTTP API does, runs the function and
prints the result (``--json``, ``--out`` or the command's own view).

A command adds only what is the terminal's own: how the result is shown, and display flags that change only
that (``--losses``). Everything else comes from the declaration, so the faces cannot drift apart.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer
from pydantic.fields import FieldInfo
from rich.markup import escape

from ..errors import InputError
from ..operations.options import Cli
from ..operations.spec import OperationSpec
from ..views.result import Result
from .app import (
    DeviceOpt,
    DtypeOpt,
    JsonOpt,
    MaxMemoryOpt,
    ModelOpt,
    OffloadFolderOpt,
    OutOpt,
    app,
    emit,
    err,
    flag_from_hint,
    friendly_errors,
    load_model,
    out,
)

COMMON: dict[str, tuple[Any, Any]] = {
    "model": (ModelOpt, None),
    "dtype": (DtypeOpt, "float32"),
    "device": (DeviceOpt, "cpu"),
    "max_memory": (MaxMemoryOpt, None),
    "offload_folder": (OffloadFolderOpt, None),
    "as_json": (JsonOpt, False),
}
PLACEMENT = ("max_memory", "offload_folder")  # the COMMON options that spread the model
# What a command may print on stderr after its result (a file it wrote and how to use it), or None.
Note = Callable[[Any, Any], str | None]  # (result, validated options) -> note
# Each declared operation's command words (``("compare", "models")`` for a sub-command), for tests and docs.
COMMAND_WORDS: dict[str, tuple[str, ...]] = {}


def declare_command(
    spec: OperationSpec,
    show: Callable[..., None],
    *,
    display: dict[str, tuple[Any, Any]] | None = None,
    on: typer.Typer = app,
    cli_name: str | None = None,
    renamed_from: str | None = None,
    more_help: str = "",
    note: Note | None = None,
    passes: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """Register ``spec`` as a command on ``on`` (a sub-app already added to ``app``), named ``cli_name`` where
    the command's word differs from the operation's name (``compare models`` for ``compare-models``).
    ``show(result, **display values)`` prints the readable view; ``display`` maps a display flag's parameter
    name to its (typer annotation, default); ``renamed_from`` is the command's old name, kept as a hidden
    deprecated alias; ``more_help`` follows the summary in ``--help``; ``note(result, options)`` is printed on
    stderr after the result (so ``--json`` stays one JSON document); ``passes()`` gives arguments of the
    function's ``python_only`` that the command supplies itself (the command line it records). An operation
    that ``loads_models`` gets no --model: its function loads what its options name."""
    display = display or {}
    parameters = [p for name, field in cli_fields(spec).items() for p in _parameters(name, field)]
    common = {name: value for name, value in COMMON.items() if not (spec.loads_models and name == "model")}
    extras = dict(display, **common)
    if draws(spec.result):
        extras["out_file"] = (OutOpt, None)
    parameters += [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a, default=d) for n, (a, d) in extras.items()
    ]
    flags = {p.name: flag_from_hint(p.annotation, p.name) for p in parameters} | {
        name: "/".join(pair) for name, pair in _paired(spec).items()
    }

    def command(**values: Any) -> None:
        shown = {name: values.pop(name) for name in display}
        model = values.pop("model") if "model" in common else None  # else its own option (it loads models)
        dtype, device, as_json = values.pop("dtype"), values.pop("device"), values.pop("as_json")
        spread = {name: values.pop(name) for name in PLACEMENT}
        out_file = values.pop("out_file", None)
        values = _parsed(spec, _zipped(_paired(spec), values), flags)
        view = functools.partial(show, **shown)
        given = passes() if passes is not None else {}
        run_declared(spec, values, view, model, dtype, device, as_json, out_file, flags, note, given, **spread)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__name__ = spec.name.replace("-", "_")
    command.__doc__ = f"{spec.summary}\n\n{more_help}" if more_help else spec.summary
    word = cli_name or spec.name
    on.command(word)(friendly_errors(command))
    COMMAND_WORDS[spec.name] = (*_group_words(on), word)
    if renamed_from is not None:
        alias = functools.wraps(command)(lambda **values: command(**values))
        alias.__doc__ = f"Renamed: use `glasslab {spec.name}`."
        on.command(renamed_from, hidden=True, deprecated=True)(friendly_errors(alias))


def _group_words(on: typer.Typer) -> tuple[str, ...]:
    """The words that reach the sub-app ``on`` from ``glasslab`` (none for the main app)."""
    if on is app:
        return ()
    names = [group.name for group in app.registered_groups if group.typer_instance is on]
    if not names or names[0] is None:
        raise RuntimeError("declare_command: add the sub-app to the main app before declaring its commands")
    return (names[0],)


def run_declared(
    spec: OperationSpec,
    values: dict[str, Any],
    show: Callable[[Any], None],
    model: str | None,
    dtype: str,
    device: str,
    as_json: bool,
    out_file: str | None = None,
    flags: dict[str, str] | None = None,
    note: Note | None = None,
    passed: dict[str, Any] | None = None,
    max_memory: str | None = None,
    offload_folder: str | None = None,
) -> None:
    """Validate ``values`` as the declared options (before any model loads), run, and print or write (then
    the command's note, on stderr). ``max_memory`` and ``offload_folder``: --max-memory's text and
    --offload-folder, which spread the model (``load_model``)."""
    options = spec.validate(values, spell=lambda name: (flags or {}).get(name, "--" + name.replace("_", "-")))

    def loaded(source: str | None) -> Any:
        return load_model(source, dtype, device, max_memory, offload_folder)

    # An operation that loads the models it names gets a loader that reads them as --model would.
    load = loaded if spec.loads_models else loaded(model)
    result = spec.function(load, **spec.arguments(options), **(passed or {}))
    emit(result, as_json, out_file, lambda: (show(result), _caveat(result)))
    text = note(result, options) if note is not None else None
    if text:
        err.print(escape(text), highlight=False)


def draws(result_type: type) -> bool:
    """Whether results of this type have a figure (``--out`` writes one; the base's figure() only refuses)."""
    figure = getattr(result_type, "figure", None)
    return figure is not None and figure is not Result.figure


def _caveat(result: Any) -> None:
    """Under the view, what the result does not prove: the same text its figure, report and panel carry."""
    text = result.figure().caveat if draws(type(result)) else ""
    if text:
        out.print(f"[dim]What this does not prove: {escape(text)}[/]", highlight=False)


def cli_fields(spec: OperationSpec) -> dict[str, FieldInfo]:
    """The declared options the command line offers (all but the server's own)."""
    return {name: f for name, f in spec.options.model_fields.items() if name not in spec.server_only}


def cli_metadata(field: FieldInfo) -> Cli:
    """The field's ``Cli`` metadata, also where it sits on an optional type (``Pairs | None``)."""
    inner, _ = _unwrap_optional(field.annotation)
    return next((m for m in (*field.metadata, *getattr(inner, "__metadata__", ())) if isinstance(m, Cli)), Cli())


def is_argument(name: str, field: FieldInfo) -> bool:
    """The prompt is the command's positional argument (as every command has it, unless ``Cli`` names its
    flags: ``edit --prompt``), else what ``Cli`` says."""
    meta = cli_metadata(field)
    return meta.argument or (name == "prompt" and not meta.flags)


def pair_parameters(pair: tuple[str, str]) -> tuple[str, str]:
    """The parameter names of a pair field's two flags (``--positive`` -> ``positive``)."""
    first, second = (flag.lstrip("-").replace("-", "_") for flag in pair)
    return first, second


def _paired(spec: OperationSpec) -> dict[str, tuple[str, str]]:
    """Fields given as two zipped flags: field name -> its (first, second) flags."""
    return {name: meta.pair for name, f in cli_fields(spec).items() if (meta := cli_metadata(f)).pair is not None}


def _zipped(paired: dict[str, tuple[str, str]], values: dict[str, Any]) -> dict[str, Any]:
    """Each pair field's two flags' values zipped into its list of pairs (None when neither was given)."""
    for name, pair in paired.items():
        first, second = (values.pop(n) or [] for n in pair_parameters(pair))
        if len(first) != len(second):
            raise InputError(f"got {len(first)} {pair[0]} but {len(second)} {pair[1]}; give them in pairs")
        values[name] = list(zip(first, second, strict=True)) or None
    return values


def _parameters(name: str, field: FieldInfo) -> list[inspect.Parameter]:
    """The command's parameter for one declared option (two for a list of pairs)."""
    pair = cli_metadata(field).pair
    if pair is None:
        return [_parameter(name, field)]
    helps = (f"{field.description} One side of a pair (repeatable).", f"Paired in order with {pair[0]} (repeatable).")
    return [
        inspect.Parameter(
            param,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[list[str] | None, typer.Option(flag, help=text)],
            default=None,
        )
        for param, flag, text in zip(pair_parameters(pair), pair, helps, strict=True)
    ]


def _parameter(name: str, field: FieldInfo) -> inspect.Parameter:
    meta = cli_metadata(field)
    annotation = _cli_type(field.annotation, meta)
    default = inspect.Parameter.empty if field.is_required() else field.get_default(call_default_factory=True)
    if is_argument(name, field):
        info: Any = typer.Argument(help=field.description or "", show_default=False)
    else:
        # A switch without named flags gets typer's --name/--no-name (a default of True must be turnable off).
        named = meta.flags or (() if annotation is bool else (f"--{name.replace('_', '-')}",))
        info = typer.Option(*named, help=_help(field))
    if default == [] or meta.whole:
        default = None  # typer's repeatable and whole-text options take None for "none given"
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[annotation, info], default=default
    )


def _cli_type(annotation: Any, meta: Cli) -> Any:
    """What typer parses: the field's type, with text for values ``Cli.parse`` reads and for choices."""
    inner, optional = _unwrap_optional(annotation)
    if meta.whole:  # one text that Cli.parse reads whole (9.1,10.0); none given: the declared default
        return str | None
    if typing.get_origin(inner) is Annotated:
        inner = typing.get_args(inner)[0]
    if typing.get_origin(inner) is list:
        (item,) = typing.get_args(inner)
        item_meta = next((m for m in getattr(item, "__metadata__", ()) if isinstance(m, Cli)), meta)
        return list[_scalar(item, item_meta)] | None
    scalar = _scalar(inner, meta)
    return scalar | None if optional else scalar


def _scalar(annotation: Any, meta: Cli) -> Any:
    base = (typing.get_origin(annotation) is Annotated and typing.get_args(annotation)[0]) or annotation
    if meta.parse is not None or typing.get_origin(base) in (Literal, tuple):
        return str
    return base


def _help(field: FieldInfo) -> str:
    """The declared description, with the choices of a ``Literal`` (checked with the other options)."""
    inner, _ = _unwrap_optional(field.annotation)
    if typing.get_origin(inner) is not Literal:
        return field.description or ""
    return f"{field.description or ''} One of: {', '.join(str(v) for v in typing.get_args(inner))}.".strip()


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (it, False)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _parsed(spec: OperationSpec, values: dict[str, Any], flags: dict[str, str]) -> dict[str, Any]:
    """Values as the declaration takes them: text parsed by ``Cli.parse`` (e.g. 9.1 -> (9, 1)), an empty
    repeatable option left to its declared default."""
    out: dict[str, Any] = {}
    fields = cli_fields(spec)
    for name, value in values.items():
        field = fields[name]
        if value is None and not field.is_required():
            continue
        meta = cli_metadata(field)
        parse = meta.parse if meta.whole else _item_parser(field)
        if parse is not None and value is not None:
            flag = flags[name].lstrip("-")
            value = [parse(v, flag) for v in value] if isinstance(value, list) else parse(value, flag)
        out[name] = value
    return out


def _item_parser(field: FieldInfo) -> Callable[[str, str], Any] | None:
    inner, _ = _unwrap_optional(field.annotation)
    if typing.get_origin(inner) is list:
        (item,) = typing.get_args(inner)
        inner = item
    metas = [*getattr(inner, "__metadata__", ()), *field.metadata]
    return next((m.parse for m in metas if isinstance(m, Cli) and m.parse is not None), None)
