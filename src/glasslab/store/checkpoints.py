"""Resumable checkpoints for long jobs (training): numbered ``step-<N>/`` folders, each written atomically
with a manifest, so a job killed at any moment resumes from the newest complete one and never from a
half-written one.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError
from .kinds import ArtifactKind
from .manifest import read_manifest, verify, write_manifest
from .paths import atomic_directory

_STEP = re.compile(r"step-(\d{9})")


class Checkpoints:
    """The checkpoints of one job in ``folder`` (e.g. ``location(SAE_CHECKPOINTS, model.key, name)``).

    ``save(step)`` yields a staging folder to write the state into; on success it is renamed to
    ``step-<N>`` with a manifest and all but the newest ``keep`` checkpoints are removed. ``latest()``
    is the newest one whose manifest exists and matches its files: a checkpoint that lacks one (copied
    in part, or written by hand) is never resumed from.
    """

    def __init__(self, folder: Path, kind: ArtifactKind, model_key: str | None = None, *, keep: int = 1):
        if keep < 1:
            raise InputError(f"keep must be at least 1 checkpoint, got {keep}")
        self.folder = Path(folder)
        self.kind = kind
        self.model_key = model_key
        self.keep = keep

    def path(self, step: int) -> Path:
        if not 0 <= step < 10**9:
            raise InputError(f"a checkpoint step must be in 0..999999999, got {step}")
        return self.folder / f"step-{step:09d}"

    @contextlib.contextmanager
    def save(self, step: int, summary: dict[str, Any] | None = None) -> Iterator[Path]:
        """Yield a staging folder for step ``step``'s state; commit it (and prune older ones) on success."""
        final = self.path(step)
        with atomic_directory(final) as staging:
            yield staging
            write_manifest(staging, self.kind, self.model_key, final.name, {"step": step, **(summary or {})})
        self.prune()

    def complete(self) -> list[tuple[int, Path]]:
        """(step, folder) of every complete checkpoint, oldest first."""
        found = []
        for step, folder in self._numbered():
            try:
                if read_manifest(folder) is not None and verify(folder, self.kind) is not None:
                    found.append((step, folder))
            except InputError:
                continue  # damaged: not resumable
        return found

    def latest(self) -> tuple[int, Path] | None:
        """(step, folder) of the newest complete checkpoint, or None when there is none."""
        complete = self.complete()
        return complete[-1] if complete else None

    def prune(self) -> None:
        """Remove every numbered folder but the newest ``keep`` complete ones (incomplete ones always go)."""
        kept = {folder for _, folder in self.complete()[-self.keep :]}
        for _, folder in self._numbered():
            if folder not in kept:
                shutil.rmtree(folder, ignore_errors=True)

    def clear(self) -> None:
        """Remove every checkpoint (the job finished, or starts over)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _numbered(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        entries = [(_STEP.fullmatch(entry.name), entry) for entry in self.folder.iterdir() if entry.is_dir()]
        return sorted((int(match.group(1)), entry) for match, entry in entries if match)
