"""Fixtures for the browser tests: the real workbench server (uvicorn in a thread, on a free port) on a tiny
model and on the default model, and Debian's Chromium driven by Playwright.

Screenshots go to test-artifacts/screenshots/ at the repository root.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deadlines import MODEL_S, STEP_S, ms

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


class Server:
    """A running workbench (``options`` go to ``create_app``): its base URL and a plain HTTP client to compare
    what the page shows."""

    def __init__(self, model, db: Path, *, patience_s: float = STEP_S, **options):
        import uvicorn

        from glasslab.app.server import create_app

        # The server gets the bound socket itself: a port picked, released, then bound again could be taken
        # by another process in between.
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.patience_s = patience_s  # how long a page step may take before it counts as hung
        self.app = create_app(model, experiments_db=db, **options)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + STEP_S
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the workbench server did not start")
            time.sleep(0.05)
        self.http = httpx.Client(base_url=self.url, timeout=MODEL_S)

    def post(self, name: str, body: dict) -> dict:
        response = self.http.post(f"/api/{name}", json=body)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=STEP_S)
        self.socket.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so a failing test's page is photographed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium (/usr/bin/chromium) is not installed; install it with the README's test set-up")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def tiny_server(tmp_path_factory) -> Iterator[Server]:
    from tests.tiny import tiny_model

    server = Server(tiny_model("llama"), tmp_path_factory.mktemp("tiny") / "experiments.sqlite")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def default_server(default_model, tmp_path_factory) -> Iterator[Server]:
    server = Server(default_model, tmp_path_factory.mktemp("default") / "experiments.sqlite", patience_s=MODEL_S)
    yield server
    server.stop()


class Page:
    """A page of the workbench that records console errors, failed requests and every API request."""

    def __init__(self, browser, server: Server, name: str):
        self.context = browser.new_context(viewport={"width": 1320, "height": 900}, accept_downloads=True)
        # Every wait, click and download of the page (Playwright's default: 30 s) allows a slow machine.
        self.context.set_default_timeout(ms(server.patience_s))
        self.page = self.context.new_page()
        self.name = name
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.outside: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("request", self._request)
        self.page.goto(server.url + "/")
        self.page.wait_for_selector("body[data-ready=true]")

    def _request(self, request) -> None:
        url = request.url
        if url.startswith("data:") or url.startswith("blob:"):
            return
        if not url.startswith("http://127.0.0.1:"):
            self.outside.append(url)
        elif "/api/" in url:
            self.requests.append(f"{request.method} {url.split('/api/', 1)[1]}")

    def analyse(self, prompt: str) -> None:
        self.page.fill("#prompt", prompt)
        self.page.click("#analyse")
        self.page.wait_for_selector("body[data-analysis=done]")

    def open_panel(self, panel: str) -> str:
        self.page.click(f"#tab-{panel}")
        self.page.wait_for_selector(f"#panel[data-panel={panel}] h2")
        return self.page.inner_text("#panel")

    def wait_text(self, selector: str, text: str) -> None:
        self.page.locator(selector, has_text=text).first.wait_for()

    def click_cell(self, canvas_selector: str, row: int, col: int) -> None:
        """Click cell (row, col) of a heatmap canvas, where the pointer would."""
        canvas = self.page.locator(canvas_selector).first
        grid = canvas.evaluate("c => JSON.parse(c.dataset.grid)")
        canvas.click(position={"x": grid["x"] + (col + 0.5) * grid["w"], "y": grid["y"] + (row + 0.5) * grid["h"]})

    def api_requests_since(self, start: int) -> list[str]:
        return self.requests[start:]

    def shot(self, label: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{self.name}-{label}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(chromium, request):
    pages: list[Page] = []

    def make(server: Server) -> Page:
        page = Page(chromium, server, request.node.name.replace("[", "-").replace("]", ""))
        pages.append(page)
        return page

    yield make
    for page in pages:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            page.shot("failure")
        page.close()


@pytest.fixture
def page(open_page, tiny_server):
    """A page on the tiny-model workbench that must not reach off the machine nor log a browser error."""
    p = open_page(tiny_server)
    yield p
    assert not p.outside, f"requests left the machine: {p.outside}"
    assert not p.errors, p.errors
