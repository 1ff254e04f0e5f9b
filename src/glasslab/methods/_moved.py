"""The flat module paths of ``glasslab.methods`` before it was grouped by purpose, kept importable.

``import glasslab.methods.dla`` (or ``from glasslab.methods import dla``, or the attribute
``glasslab.methods.dla``) still works: a finder on ``sys.meta_path`` answers each old name with the module
at its new path, once, with a DeprecationWarning naming that path, so the old name *is* the new module
(``glasslab.methods.dla is glasslab.methods.attribute.dla``) and nothing is imported twice.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from pathlib import Path
from types import ModuleType

GROUPS = {
    "observe": ("predict", "attention", "head_roles", "overview", "info", "resid_stats", "neurons"),
    "lenses": ("logit_lens", "tuned_lens", "tuned_lens_artifact", "tuned_lens_kl"),
    "intervene": ("ablation", "ablation_engine", "neuron_clamp", "steering", "steering_vectors"),
    "patch": ("patching", "patching_sweep", "path_patching", "attribution_patching", "circuit"),
    "attribute": ("dla", "dla_directions"),
}
PACKAGE = __name__.rpartition(".")[0]
# Old full name -> new full name.
MOVED = {
    f"{PACKAGE}.{module}": f"{PACKAGE}.{group}.{module}" for group, modules in GROUPS.items() for module in modules
}


_OURS = {__file__, str(Path(__file__).with_name("__init__.py"))}  # this finder and the package's __getattr__


def _outside_import_machinery() -> int:
    """The stacklevel of the first frame outside importlib and this package's alias code: the line that
    imported the old name, so the warning points there (and shows, as DeprecationWarnings do, in __main__).
    Counted as ``warnings`` counts: frames of importlib's ``_bootstrap`` are skipped, not counted."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename in _OURS or "importlib" in frame.f_code.co_filename):
        frame = frame.f_back
        level += frame is not None and "_bootstrap" not in frame.f_code.co_filename
    return level


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name and loads it as the module at its new path (imported normally, under its own name)."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} is deprecated; import {new}", DeprecationWarning, stacklevel=_outside_import_machinery()
        )
        module = importlib.import_module(new)
        spec.loader_state = module.__spec__  # the import system sets __spec__ to this (old) spec next
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run (the new module ran on its own import); give it back its own ``__spec__``."""
        module.__spec__ = module.__spec__.loader_state


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (the package's ``__init__`` calls it)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())


def moved_attribute(name: str) -> ModuleType:
    """``glasslab.methods.<old name>`` as an attribute: import the old name (warning once), else AttributeError."""
    if f"{PACKAGE}.{name}" not in MOVED:
        raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")
    return importlib.import_module(f"{PACKAGE}.{name}")
