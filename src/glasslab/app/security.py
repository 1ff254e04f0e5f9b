"""Web security for a server that runs on someone's own machine.

- Host: a page on another site can make a browser send requests to 127.0.0.1 by pointing its own domain at
  that address (DNS rebinding); such requests carry the attacker's name in ``Host``, so only loopback
  names (and the address the server was told to bind) are accepted.
- Origin / Sec-Fetch-Site: a page on another site can post to localhost without DNS tricks (a cross-site
  form or fetch); browsers mark those with an ``Origin`` that is not ours, so they are refused.
- Token: off loopback anyone on the network could reach the server, so a non-loopback ``--host`` needs a
  token on every request (header, cookie, or ``?token=`` once, which sets the cookie).
- Body size: bodies over the limit are refused before they are parsed.
- Paths: error messages sent to a client name the server's folders by role (``without_paths``).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import secrets
import sys
from collections.abc import Iterable
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from huggingface_hub import constants

from ..store import store_root

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARDS = {"0.0.0.0", "::"}
COOKIE = "glasslab_token"


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


# A Host header is a name (letters, digits, '-', '.') or a bracketed IPv6 literal, then an optional ':port'
# of digits, and nothing else: anything looser lets 'localhost:80@evil.com' pass as 'localhost'.
_HOST = re.compile(
    r"(?:(?P<name>[a-z0-9](?:[a-z0-9.-]{0,252}[a-z0-9])?)|\[(?P<ipv6>[0-9a-f:.]{2,45})\])"  # host
    r"(?::[0-9]{1,5})?"  # port
)


def _host_name(value: str) -> str | None:
    """'127.0.0.1:8000' -> '127.0.0.1'; '[::1]:8000' -> '::1'; None for anything that is not exactly a host
    and an optional port."""
    match = _HOST.fullmatch(value.lower())
    if match is None:
        return None
    return match["name"] or match["ipv6"]


class Guard:
    """ASGI middleware applying the checks above to every HTTP request."""

    def __init__(self, app, *, hosts: Iterable[str] = (), token: str | None = None, max_body: int = 16 * 1024 * 1024):
        self.app = app
        hosts = {h.lower().strip("[]") for h in (*LOOPBACK_NAMES, *hosts)}
        # Bound to every interface, the server's own names are not known; the token (required then) guards
        # instead: a rebinding page has neither the token nor the cookie, which belongs to the real host name.
        self.any_host = token is not None and bool(hosts & WILDCARDS)
        self.hosts = hosts
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        name = _host_name(host)
        if name is None or (not self.any_host and name not in self.hosts):
            return await _refuse(send, 403, f"refused: Host '{host}' is not this server's own (DNS rebinding guard)")
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            return await _refuse(send, 403, f"refused: requests from '{origin}' are not allowed (cross-site request)")
        if headers.get("sec-fetch-site") == "cross-site":
            return await _refuse(send, 403, "refused: cross-site request")
        set_cookie = False
        if self.token is not None:
            given, from_query = self._given_token(scope, headers)
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                return await _refuse(send, 401, "this server needs its access token (printed by glasslab serve)")
            set_cookie = from_query
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return await _refuse(send, 413, f"the request body is over the server's limit of {self.max_body} bytes")
        if length is None and "transfer-encoding" in headers:
            receive = await self._buffered(receive)
            if receive is None:
                return await _refuse(send, 413, f"the request body is over the server's limit of {self.max_body} bytes")
        if set_cookie:
            send = self._with_cookie(send)
        await self.app(scope, receive, send)

    def _given_token(self, scope, headers: dict) -> tuple[str | None, bool]:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip(), False
        if "x-glasslab-token" in headers:
            return headers["x-glasslab-token"], False
        cookie = SimpleCookie(headers.get("cookie", ""))
        if COOKIE in cookie:
            return cookie[COOKIE].value, False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:
            return query["token"][0], True
        return None, False

    async def _buffered(self, receive):
        """A body sent without Content-Length, read up to the limit: a replaying ``receive``, or None if too big."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                return None
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replaying():
            return replay.pop() if replay else await receive()

        return replaying

    def _with_cookie(self, send):
        cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode("latin-1")

        async def wrapped(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        return wrapped


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def without_paths(message: str) -> str:
    """``message`` with this machine's folders named by role, not by path (``<store>/steering/...``): error
    messages are written for the CLI, where a full path helps, but a client of the server must not learn the
    server's user name or layout. Replaced: the store, the HF cache, glasslab's own folder, Python's prefix and
    the home folder (longest first, both as given and with links resolved)."""
    named = [
        (store_root(), "<store>"),
        (Path(constants.HF_HUB_CACHE), "<hf-cache>"),
        (Path(constants.HF_HOME), "<hf-home>"),
        (Path(__file__).resolve().parents[1], "<glasslab>"),
        (Path(sys.prefix), "<python>"),
        (Path.home(), "~"),
    ]
    replacements = {}
    for folder, role in named:
        for form in (str(folder), str(folder.resolve())):
            if len(form) > 1:  # never '/'
                replacements.setdefault(form, role)
    for form in sorted(replacements, key=len, reverse=True):  # a folder, not a prefix of a longer name
        message = re.sub(re.escape(form) + r"(?![\w.-])", lambda _m, role=replacements[form]: role, message)
    return message
