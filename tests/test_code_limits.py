"""Size limits (issue 19, item 6) checked on the source: no module in ``src/glasslab`` over 400 lines and no
function over 80 lines (``end_lineno - lineno + 1``, decorators left out, nested functions counted on their own
too), unless its docstring (the module's, for a module) says why, in the form "Long because ...".

``ALLOWED`` lists, exactly, what other engineers have not split yet; it must shrink, so an entry that is no
longer needed fails too. An entry whose file does not exist (moved away, or not moved in yet) is skipped.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "glasslab"
MODULE_LIMIT = 400
FUNCTION_LIMIT = 80
# A stated reason: the word "long" followed, in the same sentence, by "because" (or a colon and the reason).
REASON = re.compile(r"\blong\b(?:\s*:\s*\S|[^.\n]{0,60}?\bbecause\b)", re.IGNORECASE)

# "path under src/glasslab" for a module, "path::qualified.name" for a function: what is not split yet.
ALLOWED: set[str] = set()


def _states_why(node: ast.Module | ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return bool(REASON.search(ast.get_docstring(node) or ""))


def oversized(source: str, module_limit: int = MODULE_LIMIT, function_limit: int = FUNCTION_LIMIT) -> list[str]:
    """What in ``source`` is over its limit without a stated reason: ``""`` for the module, else the
    function's qualified name (``Class.method``, ``outer.inner``)."""
    tree = ast.parse(source)
    found = []
    if len(source.splitlines()) > module_limit and not _states_why(tree):
        found.append("")
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        parent, prefix = stack.pop()
        for node in ast.iter_child_nodes(parent):
            name = f"{prefix}{getattr(node, 'name', '')}"
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                if node.end_lineno - node.lineno + 1 > function_limit and not _states_why(node):
                    found.append(name)
                stack.append((node, f"{name}."))
            elif isinstance(node, ast.ClassDef):
                stack.append((node, f"{name}."))
            else:
                stack.append((node, prefix))
    return sorted(found)


def _found() -> set[str]:
    found = set()
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        for name in oversized(path.read_text(encoding="utf-8")):
            found.add(f"{relative}::{name}" if name else relative)
    return found


def test_no_module_or_function_is_over_its_limit_without_a_reason():
    new = sorted(_found() - ALLOWED)
    assert not new, (
        f"over {MODULE_LIMIT} lines (module) or {FUNCTION_LIMIT} (function): split it by job, or say in its "
        f"docstring why it is long ('Long because ...'): {new}"
    )


def test_the_allow_list_is_exact():
    """A module or function that was split leaves the list: remove its entry here."""
    found = _found()
    stale = sorted(
        entry
        for entry in ALLOWED - found
        if (SRC / entry.split("::")[0]).is_file()  # a file moved away or not moved in yet is skipped
    )
    assert not stale, f"allowed but no longer over the limit: {stale}"


def _function(lines: int, docstring: str = "") -> str:
    body = [f'    """{docstring}"""'] if docstring else []
    body += ["    x = 1"] * (lines - 1 - len(body))
    return "\n".join(["def f():", *body]) + "\n"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (_function(80), []),
        (_function(81), ["f"]),
        (_function(81, "Long because the steps share one tape."), []),
        (_function(81, "Long: one table of cases."), []),
        (_function(81, "As long as it runs."), ["f"]),  # "long" without a reason
        (_function(81, "A long function."), ["f"]),
        ("class C:\n" + textwrap.indent(_function(81), "    "), ["C.f"]),
        ("def g():\n" + textwrap.indent(_function(81), "    "), ["g", "g.f"]),
    ],
)
def test_the_checker_flags_functions_over_the_limit(source, expected):
    assert oversized(source) == expected


def test_the_checker_flags_a_module_over_the_limit():
    long_module = "x = 1\n" * 401
    assert oversized(long_module) == [""]
    assert oversized(long_module, module_limit=401) == []
    assert oversized('"""Long because it is one table."""\n' + long_module) == []
