"""Feature labels stored beside an SAE (``labels.json``), so named features show offline.

Format (version 1), one JSON object::

    {
      "format": 1,
      "features": {
        "12": {"label": "closing parenthesis", "source": "auto", "density": 0.0031},
        "40": {"label": "French place names", "source": "neuronpedia"}
      }
    }

- keys of ``features`` are feature indices written as decimal strings (JSON keys are strings);
- ``label`` (required): a short description; ``source`` (required): who wrote it: ``"auto"`` (built by
  glasslab from top-activating contexts and promoted tokens), ``"neuronpedia"`` (fetched), ``"user"``;
- any other field (``density``, ``top_tokens``...) is kept as it is and shown where useful.

Features without an entry have no label; dead features are simply absent. Readers ignore top-level
keys they do not know, so writers may add provenance (``"generated_by"``, ``"corpus"``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..store import replace_files

LABELS_FILE = "labels.json"
FORMAT = 1


@dataclass(frozen=True)
class FeatureLabel:
    label: str
    source: str  # "auto", "neuronpedia", "user", ...
    extra: dict[str, Any] = field(default_factory=dict)  # density and other recorded facts

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "source": self.source, **self.extra}


def labels_json(labels: Mapping[int, FeatureLabel], **provenance: Any) -> bytes:
    """The bytes of a ``labels.json`` (for ``save_sae(..., extra_files={LABELS_FILE: ...})``)."""
    features = {}
    for index, entry in sorted(labels.items()):
        if not isinstance(index, int) or index < 0:
            raise InputError(f"feature label keys must be non-negative integers, got {index!r}")
        if not entry.label.strip() or not entry.source.strip():
            raise InputError(f"feature {index}'s label and source must be non-empty")
        features[str(index)] = entry.to_json()
    # One feature per line, compact: readable and diffable, ~20% smaller than indented JSON (shipped data).
    head = json.dumps({"format": FORMAT, **provenance}, ensure_ascii=False)[:-1]
    lines = ",\n".join(
        f"{json.dumps(key)}:{json.dumps(value, ensure_ascii=False, separators=(',', ':'))}"
        for key, value in features.items()
    )
    return f'{head}, "features": {{\n{lines}\n}}}}\n'.encode()


def write_labels(folder: str | os.PathLike, labels: Mapping[int, FeatureLabel], **provenance: Any) -> Path:
    """Write ``labels.json`` into an existing SAE folder (temp file + rename: never half-written), recorded in
    the folder's manifest when it has one (so the saved SAE still verifies)."""
    target = Path(folder).expanduser() / LABELS_FILE
    if not target.parent.is_dir():
        raise InputError(f"SAE folder '{target.parent}' does not exist")
    content = labels_json(labels, **provenance)
    replace_files(target.parent, {LABELS_FILE: lambda path: path.write_bytes(content)})
    return target


def read_labels(folder: str | os.PathLike | None, d_sae: int | None = None) -> dict[int, FeatureLabel]:
    """Labels from ``folder/labels.json``; an empty dict when there is no file (labels are optional).

    A damaged file is an error (one line), not silently ignored: it would hide every label.
    """
    if folder is None:
        return {}
    path = Path(folder).expanduser() / LABELS_FILE
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"'{path}' is not valid JSON ({exc.__class__.__name__}); delete or regenerate it") from None
    if (
        not isinstance(document, dict)
        or document.get("format") != FORMAT
        or not isinstance(document.get("features"), dict)
    ):
        raise InputError(f"'{path}' is not a glasslab labels file (format {FORMAT} with a 'features' object)")
    labels: dict[int, FeatureLabel] = {}
    for key, entry in document["features"].items():
        if not (isinstance(key, str) and key.isdigit()):
            raise InputError(f"'{path}': feature key {key!r} is not a feature index")
        index = int(key)
        if d_sae is not None and index >= d_sae:
            raise InputError(f"'{path}' labels feature {index} but the SAE has features 0..{d_sae - 1}")
        if not (
            isinstance(entry, dict) and isinstance(entry.get("label"), str) and isinstance(entry.get("source"), str)
        ):
            raise InputError(f"'{path}': feature {index} needs string 'label' and 'source' fields")
        extra = {k: v for k, v in entry.items() if k not in ("label", "source")}
        labels[index] = FeatureLabel(entry["label"], entry["source"], extra)
    return labels
