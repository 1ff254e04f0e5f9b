"""``glasslab``: the command-line face. Each command calls one method and prints a table or ``--json``."""

from __future__ import annotations

from . import ablation, attention, components, foundation, lens, overview, steering  # noqa: F401  (each module registers its commands)
from .app import app


def main() -> None:
    app()
