"""Options of operations: one typed model per operation, read by every face (Python, CLI, HTTP).

Pydantic checks shapes and fixed limits (a 422 over HTTP, a one-line error on the command line); anything
that depends on the loaded model or the prompt's token count (layer and head indices, positions, the
prompt's length in tokens) is checked by the method itself or, on the server, against its own limits.

``Cli`` is metadata a field may carry for the command line only: its flags (e.g. ``-k``/``--top-k`` where
the field is ``k``), and a parser for values the shell gives as text (``9.1`` for a (layer, head) pair).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ..errors import InputError
from ..store import NAME_PATTERN


@dataclass(frozen=True)
class Cli:
    """How a field appears on the command line: its flags (default ``--field-name``), whether it is the
    command's positional argument, how one value is parsed from text (default: the field's type), or, for a
    list of pairs, the two flags whose values are paired. With ``whole``, ``parse`` reads the field's whole
    value from one text (a list written ``9.1,10.0`` or a range ``2-10``, as older commands took it)."""

    flags: tuple[str, ...] = ()
    argument: bool = False
    parse: Callable[[str, str], Any] | None = None  # (text, flag) -> value, raising InputError
    # A list of (first, second) pairs given as two repeatable flags, zipped in order (--positive/--negative).
    pair: tuple[str, str] | None = None
    whole: bool = False


def parse_layer_index(text: str, flag: str, unit: str = "INDEX") -> tuple[int, int]:
    """'9.1' -> (9, 1) for --head/--neuron values, with a one-line error naming the flag."""
    layer, dot, index = text.strip().partition(".")
    if not (dot and layer.isdigit() and index.isdigit()):
        raise InputError(f"--{flag} takes LAYER.{unit}, e.g. 9.1; got '{text}'")
    return int(layer), int(index)


def parse_list(text: str, flag: str, item: Callable[[str, str], Any] = lambda part, _: part) -> list[Any]:
    """'a,b' -> [item('a'), item('b')] for options written as one comma-separated text; empty parts dropped."""
    values = [item(part, flag) for part in (p.strip() for p in text.split(",")) if part]
    if not values:
        raise InputError(f"--{flag} is empty; give comma-separated values")
    return values


# -- limits (characters, tokens, sizes); docs/http-api.md quotes these -----------------------------------------
MAX_PROMPT_CHARS = 4000
MAX_PROMPT_TOKENS = 512
MAX_NEW_TOKENS = 200
MAX_K = 100
MAX_SCALES = 16
MAX_PAIRS = 64
MAX_LIST = 512  # positions, heads, neurons, candidates
MAX_REFERENCE = 32
MAX_BATCH = 256
MAX_SEEDS = 2**31 - 1
MAX_NAME = 200
MAX_ALL_PATTERNS = 64
MAX_EXPERIMENT_BYTES = 16 * 1024 * 1024

Prompt = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROMPT_CHARS)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Index = Annotated[int, Field(ge=0, le=1_000_000)]
Position = Annotated[int, Field(ge=-MAX_PROMPT_TOKENS, le=MAX_PROMPT_TOKENS - 1)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEEDS)]
Metric = Literal["logit", "logit_diff", "prob", "loss", "kl"]
VectorName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]  # a name in the store, never a path
LayerIndex = tuple[Index, Index]  # (layer, head) or (layer, neuron)


class Options(BaseModel):
    """Every body: unknown fields are errors (a typo must not be silently ignored), and so is a string with a
    lone surrogate (JSON's ``"\\ud800"``), which is no text: it could be neither tokenized nor stored."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _whole_characters(cls, data: object) -> object:
        where = _surrogate_at(data, "")
        if where is not None:
            raise ValueError(f"{where or 'body'} holds a lone UTF-16 surrogate (like \\ud800); send valid Unicode text")
        return data


def _surrogate_at(data: object, where: str) -> str | None:
    """The path of the first string (value or key) holding a lone surrogate, else None (a loop, not recursion:
    nesting depth is the client's choice)."""
    todo: list[tuple[object, str]] = [(data, where)]
    while todo:
        value, path = todo.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")  # fails exactly on lone surrogates, at C speed
            except UnicodeEncodeError:
                return path
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            name = str(key).encode("utf-8", "backslashreplace").decode("utf-8")  # printable in the message
            inner = f"{path}.{name}" if path else name
            todo += [(key, inner), (item, inner)]
    return None


class PromptOptions(Options):
    prompt: Annotated[Prompt, Field(description="The text to run.")]


# A (layer, head) or (layer, neuron) pair: [9, 1] in JSON, 9.1 on the command line.
HeadRef = Annotated[tuple[Index, Index], Cli(parse=lambda text, flag: parse_layer_index(text, flag, "HEAD"))]
NeuronRef = Annotated[tuple[Index, Index], Cli(parse=lambda text, flag: parse_layer_index(text, flag, "NEURON"))]
