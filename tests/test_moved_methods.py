"""The flat paths of glasslab.methods from before its grouping by purpose still import (issue 19 item 6):
each old name is the module at its new path, imported once, with one DeprecationWarning naming that path."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import pytest

import glasslab.methods
from glasslab.methods._moved import MOVED

METHODS = Path(glasslab.methods.__file__).parent


@pytest.fixture
def forgotten(monkeypatch):
    """Forget every old name (restored afterwards), as in a process that has not imported them yet."""
    for old in MOVED:
        monkeypatch.delitem(sys.modules, old, raising=False)
        if old.rpartition(".")[2] in vars(glasslab.methods):  # hasattr would import it
            monkeypatch.delattr(glasslab.methods, old.rpartition(".")[2])


def _deprecations(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]


def test_every_old_name_moved_to_a_module_that_exists():
    for old, new in MOVED.items():
        relative = Path(*new.split(".")[2:])
        assert (METHODS / relative).with_suffix(".py").is_file(), new
        assert not (METHODS / old.rpartition(".")[2]).with_suffix(".py").exists(), f"{old} is still a file"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_name_imports_the_new_module_and_warns_once_naming_it(forgotten, old):
    new = importlib.import_module(MOVED[old])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert importlib.import_module(old) is new
        assert importlib.import_module(old) is new
    assert _deprecations(caught) == [f"{old} is deprecated; import {MOVED[old]}"]
    assert new.__name__ == new.__spec__.name == MOVED[old]  # the module keeps its own name and spec
    assert getattr(glasslab.methods, old.rpartition(".")[2]) is new


def test_the_old_names_work_as_attributes_and_in_from_imports(forgotten):
    with pytest.warns(DeprecationWarning, match=r"glasslab\.methods\.dla is deprecated; .*attribute\.dla$"):
        assert glasslab.methods.dla is importlib.import_module("glasslab.methods.attribute.dla")
    with pytest.warns(DeprecationWarning, match=r"import glasslab\.methods\.patch\.patching$"):
        from glasslab.methods.patching import activation_patching
    assert activation_patching is importlib.import_module("glasslab.methods.patch.patching").activation_patching
    with pytest.warns(DeprecationWarning, match=r"import glasslab\.methods\.intervene\.steering$"):
        from glasslab.methods import steering
    assert steering.__name__ == "glasslab.methods.intervene.steering"


def test_the_warning_points_at_the_line_that_imported_the_old_name(forgotten):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import glasslab.methods.tuned_lens  # noqa: F401
    assert [Path(w.filename).name for w in caught] == [Path(__file__).name]


def test_a_name_that_never_was_a_method_module_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        _ = glasslab.methods.nonexistent
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("glasslab.methods.nonexistent")
