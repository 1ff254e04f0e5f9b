"""Errors that glasslab shows to people.

Every message is one line that says what went wrong and what to do about it; the CLI prints it
as-is and exits non-zero, the Python API raises it. Subclassing ValueError/LookupError keeps them
catchable the usual way.
"""

from __future__ import annotations


class GlasslabError(Exception):
    """Base class: a problem the user can fix, described in one line."""


class ModelLoadError(GlasslabError):
    """The model could not be found, read or converted."""


class UnsupportedModelError(GlasslabError):
    """The model's architecture has no glasslab entry yet."""


class HookNameError(GlasslabError, KeyError):
    """A hook name that the model does not have."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class InputError(GlasslabError, ValueError):
    """Bad input: empty or oversized prompt, index out of range, NaNs, mismatched shapes."""
