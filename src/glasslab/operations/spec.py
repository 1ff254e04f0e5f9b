"""An operation declared once: its function, its options as one typed model, its result type.

The command line (``cli/derived.py``) and the HTTP API (``app/declared.py``) are built from these
declarations: a command's options, an endpoint's body and its OpenAPI schema are the declared model, and
``tests/test_operations_agree.py`` checks, for every operation, that the function's keyword arguments, the
CLI's options and the HTTP schema name the same things with the same defaults.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError, create_model

from ..errors import InputError
from .options import Options


@dataclass(frozen=True)
class OperationSpec:
    """One operation. ``function(model, **options)`` runs it; options named in ``server_only`` shape what the
    server sends the workbench (e.g. every head's pattern) and are not passed to the function; the HTTP body
    is the options without ``local_only`` (built with ``http_options``)."""

    name: str  # the CLI command, the HTTP path (/api/<name>) and the job kind
    options: type[Options]
    function: Callable[..., Any]
    result: type
    summary: str  # one line: the command's help and the endpoint's summary
    group: str  # where it is listed: the OpenAPI tag and the docs' section
    server_only: frozenset[str] = frozenset()
    # Options only local faces (Python, CLI) offer: they name files on this machine, which a request never may.
    local_only: frozenset[str] = frozenset()
    # Narrower types the HTTP body gives some options: a store name where locally a folder may be named too.
    http_types: tuple[tuple[str, Any], ...] = ()
    # Keyword arguments of the function that only Python callers pass (a cached forward pass, a lens object).
    python_only: frozenset[str] = frozenset()
    long: bool = False  # may take many seconds: the workbench runs it as a job
    # False for operations no request may run (each says why): they need a file on this machine or load a
    # second model; the CLI and Python still offer them, the server has no endpoint for them.
    http: bool = True
    # True for an operation that loads the models it names itself (``compare models``: two of them): its
    # function's first argument is a loader (source or None for the default -> Model) rather than a model,
    # and the CLI offers no shared --model.
    loads_models: bool = False

    def arguments(self, options: Options) -> dict[str, Any]:
        """The function's keyword arguments from validated options (values as validated, not re-dumped)."""
        return {name: getattr(options, name) for name in type(options).model_fields if name not in self.server_only}

    @functools.cached_property
    def http_options(self) -> type[Options]:
        """The HTTP body: the declared options without the local-only ones, with ``http_types`` applied (the
        declared model itself when neither applies)."""
        if not self.local_only and not self.http_types:
            return self.options
        narrower = dict(self.http_types)
        fields = {
            name: (narrower.get(name, field.annotation), field)
            for name, field in self.options.model_fields.items()
            if name not in self.local_only
        }
        return create_model(self.options.__name__ + "Body", __base__=Options, **fields)

    def __call__(self, model: Any, options: Options) -> Any:
        """Run on ``model`` (for ``loads_models``: on a loader of models) with the validated options."""
        return self.function(model, **self.arguments(options))

    def validate(self, values: dict[str, Any], spell: Callable[[str], str] = str) -> Options:
        """Options from plain values, or a one-line ``InputError`` naming the option as ``spell`` writes it
        (the CLI passes its flag names)."""
        try:
            return self.options.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = [str(part) for part in first["loc"]]
            name = spell(loc[0]) if loc else "options"
            item = f" (item {'.'.join(loc[1:])})" if len(loc) > 1 else ""
            raise InputError(f"{name}{item} {plain_error(first)}") from None

    def keyword_parameters(self) -> dict[str, inspect.Parameter]:
        """The function's keyword parameters (after the model), for the agreement test and the docs."""
        parameters = list(inspect.signature(self.function).parameters.values())[1:]
        return {p.name: p for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


_BOUNDS = {
    "greater_than_equal": ("ge", ">="),
    "less_than_equal": ("le", "<="),
    "greater_than": ("gt", ">"),
    "less_than": ("lt", "<"),
}


def plain_error(error: dict[str, Any]) -> str:
    """Pydantic's complaint about one value, as the rest of a sentence that starts with the option's name."""
    kind, context, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "literal_error":
        return f"must be one of {context['expected']}; got {value!r}"
    if kind == "missing":
        return "is required"
    if kind == "string_too_short" and context.get("min_length") == 1:
        return "is empty: give some text"
    if kind == "string_too_long":
        return f"is {len(value)} characters; at most {context['max_length']} are accepted: shorten it"
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        return f"must be {sign} {context[key]}, got {value}"
    if kind == "too_long":
        return f"takes at most {context['max_length']} values, got {context.get('actual_length')}"
    if kind == "too_short":
        return f"takes at least {context['min_length']} values, got {context.get('actual_length')}"
    message = str(error["msg"])
    return "is invalid: " + message[:1].lower() + message[1:]
