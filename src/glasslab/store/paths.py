"""The store's folder and atomic writes: everything is written into a temporary sibling first and renamed
into place, so an interrupted write never leaves a half-made artifact that a later run would trust.

The store is a per-user cache folder (``GLASSLAB_HOME`` overrides it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import platformdirs

STORE_ENV = "GLASSLAB_HOME"
_PARTIAL_PREFIX = ".partial-"
_OLD_TRAINING_PREFIX = ".training-"


def store_root() -> Path:
    """The store folder, created on first use."""
    configured = os.environ.get(STORE_ENV)
    root = Path(configured).expanduser() if configured else Path(platformdirs.user_cache_dir("glasslab"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def store_path(*parts: str) -> Path:
    """A path inside the store (not created)."""
    return store_root().joinpath(*parts)


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; rename it to ``final`` only if the block succeeds.

    On any exception (or Ctrl-C) the temporary folder is removed and ``final`` is untouched.
    """
    tmp = staging_folder(final)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def staging_folder(final: Path) -> Path:
    """A fresh hidden path beside ``final`` (not created) to build it in before renaming it into place.

    Its name carries this process's id, so a later write into the same folder can tell a leftover of a
    process that died (killed mid-save, mid-training) from the work of one that still runs, and removes
    the leftovers first.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(final.parent)
    return final.parent / f"{_PARTIAL_PREFIX}{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _remove_stale_partials(folder: Path) -> None:
    """Delete leftovers of writes whose process died (their pid no longer runs).

    ``.training-*`` folders are the staging folders of workbench trainings before they carried a pid.
    """
    for entry in folder.glob(f"{_PARTIAL_PREFIX}*"):
        pid = _pid_of(entry.name)
        if pid is None or not _pid_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)
    for entry in folder.glob(f"{_OLD_TRAINING_PREFIX}*"):
        shutil.rmtree(entry, ignore_errors=True)


def _pid_of(name: str) -> int | None:
    fields = name[len(_PARTIAL_PREFIX) :].rsplit("-", 2)
    try:
        return int(fields[-2])
    except (IndexError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
