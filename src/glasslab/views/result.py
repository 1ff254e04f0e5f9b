"""The result protocol: a method's result is a frozen dataclass whose JSON, notebook view and file export
are derived once here, so a new result needs no hand-written serialiser and every reader (notebook, report,
CLI, workbench) gets the same thing.

``Record`` derives ``to_dict`` from the dataclass's fields (recursively: nested dataclasses, lists, tuples,
dicts, enums, tensors and arrays become JSON values). A class shapes its JSON only where a field needs it:

- ``json_keys``: the output keys in order, when they differ from the fields (a computed key, a renamed or
  a dropped field);
- ``_json_<key>(self)``: the value of one key, when it is not the attribute of that name;
- ``json_spread``: keys whose value (a dict) is spread into the JSON at that place, its own keys replacing
  earlier ones of the same name (as ``{..., **record, ...}`` does: an SAE's training record).

``Result`` adds the ``kind`` (first in the JSON), ``_repr_html_`` from ``figure()`` and ``save``.
"""

from __future__ import annotations

import os
from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path, PurePath
from typing import Any, ClassVar

from .export import write_result
from .figures import Figure
from .html import figure_html


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types; floats stay floats, dict keys are kept as they are."""
    if isinstance(value, Record):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if not isinstance(value, (str, bytes)) and callable(getattr(value, "tolist", None)):
        return value.tolist()  # torch tensors, numpy arrays and numpy scalars
    return value


class Record:
    """A dataclass whose ``to_dict`` is derived from its fields (see the module docstring for the hooks)."""

    json_keys: ClassVar[tuple[str, ...]] = ()
    json_spread: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict:
        keys = self.json_keys or tuple(f.name for f in fields(self))  # type: ignore[arg-type]
        data: dict = {}
        for key in keys:
            value = self._value_for_json(key)
            if key in self.json_spread:
                data.update(value)
            else:
                data[key] = value
        return data

    def _value_for_json(self, key: str) -> Any:
        shape = getattr(self, f"_json_{key}", None)
        return jsonable(shape() if shape is not None else getattr(self, key))


class Result(Record):
    """A method's result: a ``kind``, JSON with the kind first, a figure shown in notebooks and saved to files."""

    kind: ClassVar[str]

    def to_dict(self) -> dict:
        return {"kind": self.kind, **super().to_dict()}

    def figure(self) -> Figure:
        """What the result wants drawn; results without a picture have none (notebooks then show the repr)."""
        raise NotImplementedError(f"{type(self).__name__} has no figure")

    def _repr_html_(self) -> str:
        return figure_html(self.figure())

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result by the file's suffix: ``.html``, ``.png``, ``.svg`` (its figure) or ``.json``."""
        return write_result(self, path)
