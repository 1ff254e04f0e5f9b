"""Techniques, grouped by purpose (docs/architecture.md lists the groups): each is a function
(model, inputs, options) -> a result on the result protocol.

The flat paths from before the grouping (``glasslab.methods.dla``...) still import, with a
DeprecationWarning naming the new path (``_moved``)."""

from types import ModuleType

from . import _moved

_moved.install()


def __getattr__(name: str) -> ModuleType:
    """``glasslab.methods.dla`` and the other old names as attributes, before anything imported them."""
    return _moved.moved_attribute(name)
