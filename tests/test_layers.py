"""The layers import downwards only: dictionaries and methods never import the ``glasslab.sae`` facade, the
app or the CLI, and dictionaries never import methods (imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import glasslab

SRC = Path(glasslab.__file__).parent


def imported_modules(source: str, package: str) -> list[str]:
    """Every module ``source`` (a module of ``package``) imports, anywhere in it, as an absolute name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append(module)
            found += [f"{module}.{alias.name}" for alias in node.names]  # `from glasslab import sae`
    return found


def offenders(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((SRC / layer).rglob("*.py")):
        package = ".".join(path.relative_to(SRC.parent).parts[:-1])
        for module in imported_modules(path.read_text(encoding="utf-8"), package):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(SRC)} imports {module}")
    return bad


def test_imports_inside_functions_and_relative_ones_are_seen():
    text = "from .basis import Context\n\ndef f():\n    from ...sae import load_sae\n    import glasslab.cli\n"
    found = imported_modules(text, "glasslab.methods.features")
    assert {"glasslab.methods.features.basis", "glasslab.sae", "glasslab.cli"} <= set(found)


def test_dictionaries_and_methods_never_import_the_facade_the_app_or_the_cli():
    above = ("glasslab.sae", "glasslab.app", "glasslab.cli")
    assert offenders("dictionaries", above) == []
    assert offenders("methods", above) == []


def test_dictionaries_never_import_methods():
    assert offenders("dictionaries", ("glasslab.methods",)) == []


def test_interventions_never_import_dictionaries_or_methods():
    assert offenders("interventions", ("glasslab.dictionaries", "glasslab.methods", "glasslab.sae")) == []
