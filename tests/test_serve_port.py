"""``glasslab serve``'s port check: a port left in TIME_WAIT by a crashed server is free (uvicorn binds it
with SO_REUSEADDR), a port with a live listener is a one-line error before any model loads."""

from __future__ import annotations

import errno
import os
import socket

import pytest
from typer.testing import CliRunner

from glasslab.cli import serve as serve_module
from glasslab.cli.main import app
from glasslab.errors import InputError

from .test_cli import assert_error

pytestmark = pytest.mark.skipif(os.name != "posix", reason="TIME_WAIT and SO_REUSEADDR as on POSIX")


class LoadReached(InputError):
    """Raised by the stand-in model loader: the command got past the port check."""


@pytest.fixture
def loads(monkeypatch) -> list[str | None]:
    """Replace the model load with one that records the call and stops the command there."""
    calls: list[str | None] = []

    def fake_load(model, dtype, device):
        calls.append(model)
        raise LoadReached("stand-in loader reached")

    monkeypatch.setattr(serve_module, "_load_with_progress", fake_load)
    return calls


def port_in_time_wait() -> int:
    """A loopback port whose server side of a closed connection sits in TIME_WAIT (as after a server is
    killed with a client connected): the server closes first, the client answers, the listener goes.
    The listener sets SO_REUSEADDR as uvicorn's does (its connections inherit it)."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first, so it is the side that waits
        assert client.recv(1) == b""  # the server's FIN arrived
        client.close()
    return port


def plain_bind_fails(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            assert exc.errno == errno.EADDRINUSE
            return True
    return False


def test_a_port_in_time_wait_passes_the_check(cli_env, loads):
    port = port_in_time_wait()
    assert plain_bind_fails(port), "precondition: without SO_REUSEADDR the port reads as taken"
    serve_module.check_port("127.0.0.1", port)  # no error
    line = assert_error(CliRunner().invoke(app, ["serve", "--port", str(port), "--no-browser", "-m", "tiny"]))
    assert "stand-in loader reached" in line
    assert loads == ["tiny"]


def test_a_live_listener_fails_fast_before_the_model_loads(cli_env, loads):
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's own socket
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(InputError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve_module.check_port("127.0.0.1", port)
        line = assert_error(CliRunner().invoke(app, ["serve", "--port", str(port), "--no-browser", "-m", "tiny"]))
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port} (")
    assert "choose another --port" in line
    assert loads == []


def test_an_unresolvable_host_is_one_line(cli_env, loads):
    line = assert_error(CliRunner().invoke(app, ["serve", "--host", "no-such-host.invalid", "--token", "x" * 12]))
    assert "cannot resolve --host no-such-host.invalid" in line
    assert loads == []


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
