"""Web security of the server: DNS-rebinding and cross-site guards, the access token, body limits, and the CLI's
refusals (a port in use, a short token)."""

from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import glasslab.cli.foundation
import glasslab.cli.serve  # noqa: F401  (registers serve; with foundation's commands Typer keeps subcommands)
from glasslab.app import create_app
from glasslab.app.security import is_loopback
from glasslab.cli.app import app as cli

from .test_server_helpers import client
from .tiny import tiny_model

BODY = {"prompt": "the cat sat"}


@pytest.fixture(scope="module")
def c(tmp_path_factory):
    return client(tiny_model("gpt2"), tmp_path_factory.mktemp("security"))


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "[::1]:8765", "127.0.0.1", "LOCALHOST:1"])
def test_loopback_hosts_pass(c, host):
    assert c.post("/api/tokens", json=BODY, headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example:8765", "127.0.0.1.evil.example", "192.168.1.5:8765", ""])
def test_foreign_hosts_are_refused(c, host):
    """DNS rebinding: the attacker's page reaches 127.0.0.1 under its own name, which arrives in Host."""
    headers = {"host": host}
    for response in (c.get("/api/model", headers=headers), c.post("/api/tokens", json=BODY, headers=headers)):
        assert response.status_code == 403
        assert "Host" in response.json()["error"]


@pytest.mark.parametrize(
    "host",
    [
        "localhost:80@evil.com",  # a loose parser takes the part before the last ':' for the name
        "127.0.0.1:8765@evil.example",
        "[::1]evil.example",
        "[::1]:8765@evil.example",
        "::1",  # IPv6 goes in brackets
        "localhost:",
        "localhost:http",
        "localhost:8765:8765",
        "localhost/evil.example",
        "localhost evil.example",
        "127.0.0.1:123456",
    ],
)
def test_malformed_hosts_are_refused(c, host):
    """Only a name or [IPv6 literal] with an optional port of digits is a Host; anything else, even one
    starting with a loopback name, is refused with the documented error."""
    response = c.get("/api/model", headers={"host": host})
    assert response.status_code == 403 and list(response.json()) == ["error"]
    assert "is not this server's own" in response.json()["error"]


def test_malformed_hosts_are_refused_even_with_a_wildcard_bind(tmp_path):
    token = "a-third-secret-token"
    app = create_app(tiny_model("gpt2"), token=token, hosts=["0.0.0.0"], experiments_db=tmp_path / "e.sqlite")
    c = TestClient(app, base_url="http://192.168.1.5:8765", headers={"x-glasslab-token": token})
    assert c.get("/api/model", headers={"host": "192.168.1.5:8765"}).status_code == 200
    assert c.get("/api/model", headers={"host": "192.168.1.5:8765@evil.example"}).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "http://127.0.0.1:9999"},  # another local app's page
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
    ],
)
def test_cross_site_requests_are_refused(c, headers):
    response = c.post("/api/experiments", json={"name": "x"}, headers={"host": "127.0.0.1:8765", **headers})
    assert response.status_code == 403
    assert c.get("/api/experiments").json()["experiments"] == []


def test_same_origin_requests_pass(c):
    headers = {"host": "127.0.0.1:8765", "origin": "http://127.0.0.1:8765", "sec-fetch-site": "same-origin"}
    assert c.post("/api/tokens", json=BODY, headers=headers).status_code == 200


def test_token_required_on_every_request(tmp_path):
    token = "s3cret-token-value"
    app = create_app(tiny_model("gpt2"), token=token, hosts=["10.1.2.3"], experiments_db=tmp_path / "e.sqlite")
    c = TestClient(app, base_url="http://10.1.2.3:8765")
    for path in ("/", "/api/model", "/api/openapi.json"):
        assert c.get(path).status_code == 401
    assert c.get("/api/model", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/model", headers={"authorization": f"Bearer {token}"}).status_code == 200
    assert c.get("/api/model", headers={"x-glasslab-token": token}).status_code == 200
    first = c.get(f"/?token={token}")
    assert first.status_code == 200
    cookie = first.headers["set-cookie"]
    assert f"glasslab_token={token}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert c.post("/api/tokens", json=BODY).status_code == 200  # the cookie now rides along
    c.cookies.clear()
    assert c.post("/api/tokens", json=BODY).status_code == 401
    # The bound address is accepted as Host; other names still are not, token or not.
    assert c.get("/api/model", headers={"host": "evil.example", "x-glasslab-token": token}).status_code == 403


def test_oversized_bodies_are_refused(c):
    big = {"name": "big", "results": {"blob": "x" * (17 * 1024 * 1024)}}
    response = c.post("/api/experiments", json=big)
    assert response.status_code == 413
    chunks = (b"x" * 1024 * 1024 for _ in range(17))  # no Content-Length: counted while read
    response = c.post("/api/experiments", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_loopback_detection():
    assert all(map(is_loopback, ["127.0.0.1", "127.5.5.5", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.0.1", "::", "example.com"]))


def test_serve_refuses_a_port_in_use_and_a_short_token():
    runner = CliRunner()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(cli, ["serve", "--port", str(port), "--no-browser"])
    assert result.exit_code == 2 and "choose another --port" in result.output
    result = runner.invoke(cli, ["serve", "--token", "short", "--no-browser"])
    assert result.exit_code == 2 and "at least 8" in result.output


def test_bound_to_every_interface_the_token_guards(tmp_path):
    token = "another-secret-token"
    app = create_app(tiny_model("gpt2"), token=token, hosts=["0.0.0.0"], experiments_db=tmp_path / "e.sqlite")
    c = TestClient(app, base_url="http://192.168.1.5:8765")
    assert c.get("/api/model").status_code == 401
    assert c.get("/api/model", headers={"x-glasslab-token": token}).status_code == 200
    cross = {"x-glasslab-token": token, "origin": "http://evil.example"}
    assert c.post("/api/tokens", json=BODY, headers=cross).status_code == 403
    # Without a token a wildcard bind does not open the Host check.
    open_app = create_app(tiny_model("gpt2"), hosts=["0.0.0.0"], experiments_db=tmp_path / "f.sqlite")
    assert TestClient(open_app, base_url="http://192.168.1.5:8765").get("/api/model").status_code == 403
