"""``manifest.json``: what a saved artifact holds (each file's size and sha256), so a reader can tell a
complete artifact from a truncated, partly copied or damaged one. Artifacts saved before manifests
existed have none; they are read as before.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import InputError
from .kinds import ArtifactKind

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


class DamagedArtifact(InputError):
    """An artifact whose files do not match its manifest (missing, truncated, changed)."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(
    folder: Path, kind: ArtifactKind, model_key: str | None, name: str | None, summary: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Record every file under ``folder`` (the manifest itself aside) in ``folder/manifest.json``."""
    from .. import __version__  # the package imports the store: read the version when saving, not at import

    files = {
        path.relative_to(folder).as_posix(): {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() != MANIFEST
    }
    manifest = {
        "format": MANIFEST_FORMAT,
        "kind": kind.name,
        "name": name,
        "model_key": model_key,
        "glasslab_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": files,
        "summary": summary or {},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return manifest


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest in ``folder``, or None when it has none (an artifact older than manifests).

    A manifest that is there but unreadable raises DamagedArtifact: something overwrote it.
    """
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            raise ValueError("not a manifest")
    except (OSError, ValueError) as exc:
        raise DamagedArtifact(f"the manifest {path} is unreadable ({type(exc).__name__}); save it again") from None
    return manifest


def verify(folder: Path, kind: ArtifactKind | None = None, *, deep: bool = False) -> dict[str, Any] | None:
    """Check ``folder`` against its manifest; returns the manifest (None when it has none).

    Each recorded file must exist with its recorded size (cheap: catches a truncated or half-copied file);
    ``deep`` also compares sha256 (reads every byte: catches a file changed in place). Raises
    DamagedArtifact naming the first file that differs.
    """
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    what = kind.describe if kind is not None else str(manifest.get("kind", "artifact"))
    for relative, recorded in manifest["files"].items():
        path = folder / relative
        try:
            if Path(relative).is_absolute() or ".." in Path(relative).parts:
                raise ValueError("a recorded file outside the artifact")  # a forged manifest: read nothing there
            size = path.stat().st_size if path.is_file() else None
            expected = int(recorded["bytes"])
        except (OSError, KeyError, TypeError, ValueError):
            size, expected = None, -1
        if size is None:
            problem = f"{relative} is missing"
        elif size != expected:
            problem = f"{relative} has {size} bytes, its manifest records {expected}"
        elif deep and sha256_of(path) != recorded.get("sha256"):
            problem = f"{relative} differs from its recorded sha256"
        else:
            continue
        advice = kind.hint.format(name=folder.name) if kind is not None and kind.hint else "save it again"
        raise DamagedArtifact(f"the {what} at {folder} is unreadable (incomplete or damaged: {problem}); {advice}")
    return manifest
