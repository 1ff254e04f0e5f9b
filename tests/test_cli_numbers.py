"""Every number the CLI takes must be finite: nan, inf and -inf are one-line errors, as in the HTTP API."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator

import pytest
from typer.testing import CliRunner

from glasslab.cli.app import flag_of
from glasslab.cli.main import app

from .test_cli import assert_error

NON_FINITE = ("nan", "inf", "-inf")


def _commands(typer_app, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Callable]]:
    """(words that invoke it, its function) for every command, sub-apps included."""
    for info in typer_app.registered_commands:
        yield (*prefix, info.name or info.callback.__name__.replace("_", "-")), info.callback
    for group in typer_app.registered_groups:
        yield from _commands(group.typer_instance, (*prefix, group.name))


def _float_options() -> list[tuple[tuple[str, ...], str]]:
    """(command line up to the option, option flag) for every float option of every command; required
    arguments and options get a placeholder (the check runs before any of them is used)."""
    found = []
    for words, callback in _commands(app):
        annotated = typing.get_type_hints(callback, include_extras=True)
        bare = typing.get_type_hints(callback)
        defaults = {name: p.default for name, p in inspect.signature(callback).parameters.items()}
        needed: list[str] = []
        floats: list[str] = []
        for name, hint in annotated.items():
            if name == "return":
                continue
            integers = (int, list[int])  # a declared list option is typed list[int] | None
            placeholder = "1" if any(t in integers for t in (bare[name], *typing.get_args(bare[name]))) else "the cat"
            if "ArgumentInfo" in repr(getattr(hint, "__metadata__", ())):
                needed.append(placeholder)
            elif defaults[name] is inspect.Parameter.empty:
                needed += [flag_of(callback, name), placeholder]
            if float in (bare[name], *typing.get_args(bare[name])) or list[float] in typing.get_args(bare[name]):
                floats.append(flag_of(callback, name))
        found += [((*words, *needed), flag) for flag in floats]
    return found


FLOAT_OPTIONS = _float_options()


def test_the_walk_finds_the_float_options():
    flags = {(words[0], flag) for words, flag in FLOAT_OPTIONS}
    assert ("generate", "--temperature") in flags
    assert ("generate", "--top-p") in flags
    assert len(FLOAT_OPTIONS) >= 10


@pytest.mark.parametrize(("words", "flag"), FLOAT_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
@pytest.mark.parametrize("bad", NON_FINITE)
def test_every_float_option_refuses_non_finite_numbers(words, flag, bad, monkeypatch, tmp_path):
    """Refused before the model loads (no --model is needed: the check runs first)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path))
    result = CliRunner().invoke(app, [*words, f"{flag}={bad}", "--model", str(tmp_path / "missing.gguf")])
    line = assert_error(result)
    assert line == f"error: {flag} must be a finite number, not {float(bad)}"


@pytest.mark.parametrize(
    ("words", "flag"),
    [
        (("steer-sweep", "the cat", "--vector", "v"), "--scales"),
        (("sae", "clamp", "the cat", "--sae", "s", "--feature", "0"), "--sweep"),
    ],
)
@pytest.mark.parametrize("bad", NON_FINITE)
def test_comma_separated_numbers_refuse_non_finite(words, flag, bad, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path))
    result = CliRunner().invoke(app, [*words, flag, f"1,{bad}", "--model", str(tmp_path / "missing.gguf")])
    line = assert_error(result)
    assert line == f"error: {flag} must be finite numbers, not {float(bad)}"


def test_finite_numbers_still_pass_the_check(monkeypatch, tmp_path):
    """The same command with a finite value gets past the check (and fails only on the missing model)."""
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path))
    missing = tmp_path / "missing.gguf"
    line = assert_error(CliRunner().invoke(app, ["generate", "the cat", "--temperature", "0.5", "--model", missing]))
    assert "does not exist" in line
