"""Dictionary kinds by architecture name (the names SAELens writes in ``cfg.json``).

A config names its architecture; the registry turns that name into the class that encodes, decodes and
trains it, so no other code switches on the name. Adding a kind is one class and one ``register`` call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from ..errors import InputError

if TYPE_CHECKING:
    from .base import Dictionary

_KINDS: dict[str, type[Dictionary]] = {}
Kind = TypeVar("Kind", bound="type[Dictionary]")


def register(kind: Kind) -> Kind:
    """Make ``kind`` the class for configs whose architecture is ``kind.architecture`` (usable as a decorator)."""
    name = kind.architecture
    if not name:
        raise ValueError(f"{kind.__name__} needs an architecture name to be registered")
    if name in _KINDS and _KINDS[name] is not kind:
        raise ValueError(f"architecture '{name}' is registered already, by {_KINDS[name].__name__}")
    _KINDS[name] = kind
    return kind


def unregister(name: str) -> None:
    """Forget an architecture (tests register toy kinds and remove them again)."""
    _KINDS.pop(name, None)


def dictionary_class(architecture: str) -> type[Dictionary]:
    """The registered class for ``architecture``; a one-line error lists the known names otherwise."""
    try:
        return _KINDS[architecture]
    except KeyError:
        raise InputError(
            f"SAE architecture '{architecture}' is not supported; glasslab reads {', '.join(_KINDS)}"
        ) from None


def architectures() -> tuple[str, ...]:
    """Every registered architecture name, in registration order."""
    return tuple(_KINDS)


def trainable_architectures() -> tuple[str, ...]:
    """The registered architectures glasslab's trainer can train (those with a training loss)."""
    return tuple(name for name, kind in _KINDS.items() if kind.trainable)
