"""Imports point down only (architecture issue; docs/architecture.md draws the layers): every import of a
glasslab module in src/, at the top of a file or inside a function, goes to the same layer or one below."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "glasslab"
# Lowest first. A top-level package or module of glasslab -> its layer's rank.
LAYERS: list[set[str]] = [
    {"errors", "progress"},
    {"store"},
    {"views"},
    {"model"},
    {"data", "cluster"},
    {"interventions"},
    {"activations"},
    {"dictionaries"},
    {"methods"},
    {"operations"},
    {"__init__", "sae"},  # the public facades
    {"app"},
    {"cli"},  # `glasslab serve` starts the app
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _top(module: Path) -> str:
    parts = module.relative_to(SRC).with_suffix("").parts
    return parts[0] if parts[0] != "__init__" or len(parts) > 1 else "__init__"


def imported_tops(path: Path, src: Path = SRC) -> list[tuple[int, str]]:
    """(line, top-level glasslab package) of every glasslab import in ``path``, relative ones resolved."""
    package = list(path.relative_to(src.parent).with_suffix("").parts)
    package = package if path.name == "__init__.py" else package[:-1]
    package = package[:-1] if package and package[-1] == "__init__" else package
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = [*base, *(node.module.split(".") if node.module else [])]
                names = [alias.name for alias in node.names]
                if len(target) == 1:  # "from .. import x": x is the top-level module
                    found += [(node.lineno, name) for name in names]
                    continue
            elif node.module and node.module.split(".")[0] == "glasslab":
                target = node.module.split(".")
                if len(target) == 1:
                    found += [(node.lineno, alias.name) for alias in node.names]
                    continue
            else:
                continue
            found.append((node.lineno, target[1]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[1]) for a in node.names if a.name.startswith("glasslab.")]
    return found


def test_every_top_level_package_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in SRC.iterdir() if not p.name.startswith(("_", "."))}
    tops = {t for t in tops if (SRC / t).is_dir() or (SRC / f"{t}.py").is_file()} - {"static"}
    assert tops - set(RANK) == set(), "give each new package a layer here and in docs/architecture.md"


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path):
    here = _top(path)
    upward = [
        f"line {line}: {here} imports {target}"
        for line, target in imported_tops(path)
        if target in RANK and RANK[target] > RANK[here]
    ]
    assert not upward, f"{path.relative_to(SRC)} imports a higher layer: {upward}"


def test_the_checker_sees_imports_inside_functions_and_relative_ones(tmp_path):
    package = tmp_path / "glasslab" / "methods"
    package.mkdir(parents=True)
    module = package / "thing.py"
    module.write_text(
        "from ..app import server\nfrom . import dla\n\ndef f():\n    from glasslab.cli.app import app\n"
        "    import glasslab.sae.x\n    from .. import operations\n"
    )
    tops = sorted(target for _, target in imported_tops(module, tmp_path / "glasslab"))
    assert tops == ["app", "cli", "methods", "operations", "sae"]
