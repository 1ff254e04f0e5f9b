"""Replacing files inside an artifact already saved (labels and dashboards written beside a trained SAE, fetched
labels cached beside a hub SAE) without breaking its manifest: every new file is written in full beside its
final name first, and only then are the files and the manifest that records them renamed into place, so a
reader never sees half a file and the manifest keeps matching what the folder holds.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import InputError
from .manifest import MANIFEST, read_manifest, sha256_of

_lock = threading.Lock()  # one read-modify-write of a manifest at a time (server threads)


def replace_files(folder: Path, writers: Mapping[str, Callable[[Path], None]]) -> dict | None:
    """Write each file ``name`` of ``folder`` by calling ``writers[name](path)`` on a scratch path, then rename
    them over the old ones and record their sizes and sha256 in the folder's manifest (returned).

    A name may sit in a subfolder that exists (``layer-3/labels.json`` of a transcoder set, whose one manifest
    records every layer's files). A folder without a manifest (saved before manifests, a hub cache) gets none:
    only its files change. A writer that raises leaves every file and the manifest as they were.
    """
    if not folder.is_dir():
        raise InputError(f"the folder '{folder}' does not exist")
    for name in writers:
        parts = Path(name).parts
        bad = not parts or Path(name).is_absolute() or any(p in (".", "..") for p in parts) or name == MANIFEST
        if bad or not (folder / name).parent.is_dir():
            raise InputError(f"'{name}' is not a file name that may be replaced in a saved artifact")
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    scratch = {name: (folder / name).with_name(f".{Path(name).name}.{tag}.tmp") for name in writers}
    manifest_scratch = folder / f".{MANIFEST}.{tag}.tmp"
    try:
        for name, write in writers.items():
            write(scratch[name])
        with _lock:
            manifest = read_manifest(folder)
            if manifest is not None:
                for name, path in scratch.items():
                    manifest["files"][Path(name).as_posix()] = {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
                manifest_scratch.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
            for name, path in scratch.items():
                os.replace(path, folder / name)
            if manifest is not None:
                os.replace(manifest_scratch, folder / MANIFEST)
    finally:
        for path in (*scratch.values(), manifest_scratch):
            path.unlink(missing_ok=True)
    return manifest
