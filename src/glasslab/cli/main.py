"""``glasslab``: the command-line face. Each command calls one method and prints a table or ``--json``."""

from __future__ import annotations

# Each command module registers its commands on the app when imported.
from . import ablation, attention, circuit, components, foundation, lens, overview, patching, steering  # noqa: F401
from .app import app


def main() -> None:
    app()
