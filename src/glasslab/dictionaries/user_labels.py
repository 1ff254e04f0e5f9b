"""Feature labels a person wrote, kept in glasslab's store and shown over the SAE's own labels.

An SAE's ``labels.json`` sits inside the installed package (shipped SAEs), in the Hugging Face cache or
beside a trained SAE, and is rewritten by the labeller: a person's edits must survive all of that, so they
live apart, in ``location(SAE_USER_LABELS) / KEY / "labels.json"`` (the same format, ``source: "user"``).
``KEY`` names the SAE the way it was loaded (shipped folder, store name, hub release and id), so the edit
shows wherever that SAE is used. ``labels_of`` (loading.py) lays them over the SAE's own labels, keeping
the facts recorded there (density and the rest).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
from pathlib import Path

from ..errors import InputError
from ..store import SAE_USER_LABELS, SAES, STORE_ENV, location, store_root
from . import loading
from .labels_file import LABELS_FILE, FeatureLabel, read_labels, write_labels
from .sae import SAE

MAX_LABEL = 200  # characters: a label names a feature in one line of a chart
USER = "user"
_lock = threading.Lock()  # one read-modify-write of a labels file at a time (server threads)


def _key(sae: SAE) -> str | None:
    """Which SAE this is, independent of where this installation keeps it (None: not loaded by name)."""
    origin = loading.origin_of(sae)
    return sae_key(origin.folder, origin.release, origin.sae_id)


def sae_key(folder: Path | None, release: str | None = None, sae_id: str | None = None) -> str | None:
    """The key of the SAE saved in ``folder`` (shipped, in the store, elsewhere) or of a hub release's SAE."""
    if release and sae_id:
        return f"hub/{release}/{sae_id}"
    if folder is None:
        return None
    folder = Path(folder).resolve()
    for prefix, root in (("shipped", loading.SHIPPED_ROOT), ("store", store_root() / SAES.folder)):
        if folder.is_relative_to(root.resolve()):
            return f"{prefix}/{folder.relative_to(root.resolve()).as_posix()}"
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    return f"folder/{folder.name}-{digest}"


def user_labels_folder(sae: SAE) -> Path | None:
    """The store folder holding this SAE's user labels (None for an SAE glasslab cannot name)."""
    origin = loading.origin_of(sae)
    return _folder(origin.folder, origin.release, origin.sae_id, loading.SHIPPED_ROOT, os.environ.get(STORE_ENV))


@functools.lru_cache(maxsize=256)
def _folder(
    folder: Path | None, release: str | None, sae_id: str | None, _shipped: Path, _home: str | None
) -> Path | None:
    """Resolving paths costs more than the stat ``labels_of`` makes on every call: kept per SAE origin and
    store (the roots are in the arguments only to key the cache)."""
    return folder_for(sae_key(folder, release, sae_id))


def folder_for(key: str | None) -> Path | None:
    """The store folder of the user labels of the SAE with this key (``sae_key``)."""
    return None if key is None else location(SAE_USER_LABELS) / re.sub(r"[^A-Za-z0-9._-]+", "--", key)


def user_stamp(sae: SAE) -> tuple:
    """The user labels file as it is now (inode, time, size; () when there is none): any edit changes it."""
    folder = user_labels_folder(sae)
    try:
        s = (folder / LABELS_FILE).stat() if folder is not None else None
    except OSError:
        return ()
    return () if s is None else (s.st_ino, s.st_mtime_ns, s.st_size)


def user_labels(sae: SAE) -> dict[int, FeatureLabel]:
    """The labels a person wrote for this SAE (empty when none)."""
    return read_labels(user_labels_folder(sae), sae.d_sae)


def overlay(own: dict[int, FeatureLabel], user: dict[int, FeatureLabel]) -> dict[int, FeatureLabel]:
    """``own`` with each user label replacing the text and source; the facts recorded with the automatic
    label (density, top tokens, ...) stay, and ``replaces`` says what the label was."""
    merged = dict(own)
    for feature, edit in user.items():
        before = own.get(feature)
        extra = {} if before is None else {**before.extra, "replaces": before.label}
        merged[feature] = FeatureLabel(edit.label, edit.source, {**extra, **edit.extra})
    return merged


def set_feature_label(sae: SAE, feature: int, text: str) -> FeatureLabel:
    """Label ``feature`` of ``sae`` with ``text`` (one line, 1..200 characters), kept in the store; it shows
    over the SAE's own label everywhere from now on. Returns the label as ``labels_of`` now gives it."""
    label = " ".join(str(text).split())
    if not label:
        raise InputError("label: empty; write a few words, or clear the label (clear_feature_label, --clear)")
    if len(label) > MAX_LABEL:
        raise InputError(f"label: {len(label)} characters; at most {MAX_LABEL} (a label is a short name)")
    _edit(sae, feature, FeatureLabel(label, USER))
    return loading.labels_of(sae)[feature]


def clear_feature_label(sae: SAE, feature: int) -> bool:
    """Remove the user's label of ``feature`` (the SAE's own label shows again); False if it had none."""
    return _edit(sae, feature, None)


def _edit(sae: SAE, feature: int, entry: FeatureLabel | None) -> bool:
    if not 0 <= feature < sae.d_sae:
        raise InputError(f"feature {feature} is out of range for this SAE (valid: 0..{sae.d_sae - 1})")
    folder = user_labels_folder(sae)
    if folder is None:
        raise InputError("this SAE was not loaded by name (load_sae), so glasslab cannot tell which SAE to label")
    with _lock:
        labels = user_labels(sae)
        had = labels.pop(feature, None) is not None
        if entry is not None:
            labels[feature] = entry
            folder.mkdir(parents=True, exist_ok=True)
        if labels:
            write_labels(folder, labels, sae=_key(sae))
        else:
            (folder / LABELS_FILE).unlink(missing_ok=True)
    sae.labels_cache = None  # this SAE object shows the edit at once (others notice the file's new stamp)
    return had
