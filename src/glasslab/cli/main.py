"""``glasslab``: the command-line face. Each command calls one method and prints a table or ``--json``."""

from __future__ import annotations

import importlib
import pkgutil

from . import __path__ as _cli_path
from .app import app

# Each command module registers its commands on the app when imported; every module of this package
# except the shared ones is a command module, so a new face needs no edit here.
for _module in pkgutil.iter_modules(_cli_path):
    if _module.name not in {"app", "main"}:
        importlib.import_module(f"{__package__}.{_module.name}")


def main() -> None:
    app()
