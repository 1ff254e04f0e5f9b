"""Write a result's figure to a file: ``.html`` (interactive), ``.png`` or ``.svg`` (static), ``.json``.

A result with a page of its own (``html_page()``: the attribution graph's interactive viewer) writes that
page as its ``.html``; every other result writes its figure's page.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..errors import InputError
from .figures import Figure
from .html import page
from .static import save_static

SUFFIXES = (".html", ".png", ".svg", ".json")


def write_result(result, path: str | os.PathLike) -> Path:
    """Write ``result`` (which has ``figure()`` and ``to_dict()``) by the file's suffix, atomically."""
    target = Path(path).expanduser()
    suffix = target.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"--out must end in {', '.join(SUFFIXES)}; got '{target.name}'")
    if not target.parent.exists():
        raise InputError(f"folder '{target.parent}' does not exist; create it first")
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    scratch = Path(temporary)
    try:
        if suffix == ".json":
            scratch.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        elif suffix == ".html":
            own_page = getattr(result, "html_page", None)
            scratch.write_text(own_page() if callable(own_page) else page(result.figure()), encoding="utf-8")
        else:
            figure: Figure = result.figure()
            save_static(figure, scratch.with_suffix(suffix))
            scratch.with_suffix(suffix).replace(scratch)
        os.replace(scratch, target)
    finally:
        for leftover in (scratch, scratch.with_suffix(suffix)):
            if leftover.exists() and leftover != target:
                leftover.unlink()
    return target
