"""Finding, listing and saving artifacts of any kind by name (or, where a kind allows it, by folder), so
every artifact resolves names, checks them and writes atomically the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .kinds import ArtifactKind, check_model_key, check_name, is_name
from .manifest import verify, write_manifest
from .paths import atomic_directory, store_root

_SHOWN = 12  # names listed in a not-found message


class ArtifactNotFound(InputError):
    """No artifact of that kind under that name (or at that folder)."""


@dataclass(frozen=True)
class Artifact:
    """One stored artifact: its name, folder and manifest (None for artifacts saved before manifests)."""

    kind: str
    name: str
    path: Path
    manifest: dict[str, Any] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        manifest = self.manifest or {}
        return {
            "kind": self.kind,
            "name": self.name,
            "created": manifest.get("created"),
            "glasslab_version": manifest.get("glasslab_version"),
            "bytes": sum(int(f.get("bytes", 0)) for f in manifest.get("files", {}).values()) if manifest else None,
            "summary": manifest.get("summary", {}),
        }


def location(kind: ArtifactKind, model_key: str | None = None, name: str | None = None) -> Path:
    """The folder of ``kind`` (for ``model_key`` when it is stored per model), or of the artifact ``name``
    in it; names and keys are checked, so the result is always inside that folder. Nothing is created."""
    folder = store_root().joinpath(*[part for part in kind.folder.split("/") if part])
    if kind.per_model:
        folder = folder / check_model_key(model_key, kind)
    if kind.below_model:
        folder = folder / kind.below_model
    return folder if name is None else folder.joinpath(*check_name(name, kind).split("/"))


def locate(kind: ArtifactKind, model_key: str | None, name_or_path: str | Path) -> tuple[Path, str | None]:
    """(folder, name): a valid name (a ``str``) is its folder in the store; a ``Path``, or any other text,
    is a local folder when ``kind`` allows paths (name None), else InputError. A ``Path`` directly inside the
    kind's own folder is that artifact, for kinds whose folder names glasslab makes itself from text the name
    rule refuses (a GGUF file's stem with a space). Nothing is checked on disk."""
    text = str(name_or_path)
    if not text.strip():
        raise InputError(f"give the {kind.describe} a name (letters, digits, '.', '_', '-') or a folder path")
    if isinstance(name_or_path, str) and _looks_like_name(text, kind):
        return location(kind, model_key, text), text
    if isinstance(name_or_path, Path) and not kind.paths and _in_own_folder(name_or_path, kind, model_key):
        return name_or_path, name_or_path.name
    if not kind.paths:
        return location(kind, model_key, check_name(text, kind)), text  # a bad name raises, saying what fits
    return Path(text).expanduser(), None


def _in_own_folder(folder: Path, kind: ArtifactKind, model_key: str | None) -> bool:
    return kind.name_parts == 1 and folder.name not in ("", ".", "..") and folder.parent == location(kind, model_key)


def _looks_like_name(text: str, kind: ArtifactKind) -> bool:
    parts = text.split("/")
    return len(parts) == kind.name_parts and all(is_name(part) for part in parts)


def resolve(kind: ArtifactKind, model_key: str | None, name_or_path: str | Path) -> Path:
    """The folder of an existing, complete artifact: by name in the store, or (where the kind allows) a
    folder. Complete means ``kind.files`` are there and the files match the manifest when it has one.
    Not found: ArtifactNotFound naming what is saved; damaged: DamagedArtifact."""
    folder, name = locate(kind, model_key, name_or_path)
    if not folder.is_dir() or any(not (folder / file).is_file() for file in kind.files):
        hint = kind.hint.format(name=name_or_path)
        if name is None:
            raise ArtifactNotFound(f"no {kind.describe} at {folder}" + (f"; {hint}" if hint else ""))
        saved = [artifact.name for artifact in list_artifacts(kind, model_key)]
        shown = ", ".join(saved[:_SHOWN]) + (f" and {len(saved) - _SHOWN} more" if len(saved) > _SHOWN else "")
        where = f" for {model_key}" if kind.per_model else ""
        raise ArtifactNotFound(
            f"no {kind.describe} '{name}'{where} in the store ({f'saved: {shown}' if saved else 'none saved'})"
            + (f"; {hint}" if hint else "")
        )
    verify(folder, kind)
    return folder


def list_artifacts(kind: ArtifactKind, model_key: str | None = None) -> list[Artifact]:
    """The complete artifacts of ``kind`` (for ``model_key``), sorted by name, each with its manifest.

    Hidden entries (staging folders of writes in progress) and incomplete or damaged artifacts are left out.
    """
    root = location(kind, model_key)
    found: list[Artifact] = []
    for folder in sorted(root.glob("/".join(["*"] * kind.name_parts))) if root.is_dir() else []:
        name = folder.relative_to(root).as_posix()
        if not folder.is_dir() or not _looks_like_name(name, kind):
            continue
        if any(not (folder / file).is_file() for file in kind.files):
            continue
        try:
            manifest = verify(folder, kind)
        except InputError:
            continue
        found.append(Artifact(kind.name, name, folder, manifest))
    return found


@contextlib.contextmanager
def save(
    kind: ArtifactKind,
    model_key: str | None,
    name_or_path: str | Path,
    *,
    summary: dict[str, Any] | None = None,
    name: str | None = None,
) -> Iterator[Path]:
    """Yield an empty staging folder; when the block succeeds, write its ``manifest.json`` and rename it to
    the artifact's place (replacing an older one). On any exception nothing is left and the old one stays.

    ``name_or_path`` is resolved as in ``locate``; ``summary`` (small, JSON) goes into the manifest, for listings.
    ``name`` is the artifact's name when it is saved to a path first and moved into the store later (the
    workbench's training renames its folder into place only if the job was not cancelled).
    """
    folder, found = locate(kind, model_key, name_or_path)
    with atomic_directory(folder) as staging:
        yield staging
        write_manifest(staging, kind, model_key, name or (found if found is not None else folder.name), summary)
