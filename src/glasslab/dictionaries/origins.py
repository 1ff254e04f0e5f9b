"""Where a loaded SAE came from: its name and folder, kept on it for labels, links and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .sae import SAE


@dataclass(frozen=True)
class SAEOrigin:
    """Kept on a loaded SAE as ``sae.origin``: its name (what ``load_sae`` was given) and its folder
    (where ``labels.json`` may sit beside it), for dashboards and the CLI."""

    source: str
    folder: Path | None = None
    release: str | None = None
    sae_id: str | None = None


def origin_of(sae: SAE) -> SAEOrigin:
    return getattr(sae, "origin", None) or SAEOrigin(source=repr(sae))


def with_origin(sae: SAE, origin: SAEOrigin) -> SAE:
    sae.origin = origin
    return sae
