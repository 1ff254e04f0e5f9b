"""One small driver interface over three browser engines, so one walkthrough of the workbench runs in each.

- Chromium: Debian's, through Playwright (as in the other browser tests).
- Firefox: Debian's firefox-esr, through Mozilla's own Marionette client (`marionette-driver` on PyPI), which
  talks to the browser directly: no geckodriver (Debian, PyPI and npm have no Linux build of it: npm's
  `geckodriver` downloads it at install time) and no Playwright Firefox build (a download). Playwright's
  WebDriver BiDi route to a stock Firefox fails on firefox-esr: it sends a command the ESR does not know.
- WebKit (Safari's engine): Debian's WebKitGTK through its own WebDriver server (WebKitWebDriver, package
  webkit2gtk-driver) and Selenium. WebKitGTK has no headless mode, so it draws into a private Xvfb display.

Each driver offers the same few primitives (navigate, run a script, click, type, press a key, hover, click a
point, screenshot); waiting and reading the page are built on scripts, the same in every engine. Clicks,
keys and hovers are real input events sent by the browser's automation protocol, not synthetic DOM events.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import time
import warnings
from pathlib import Path

from tests.deadlines import STEP_S, ms

CHROMIUM = Path("/usr/bin/chromium")
FIREFOX_NAMES = ("firefox-esr", "firefox")
WEBKIT_DRIVER = "WebKitWebDriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WIDTH, HEIGHT = 1320, 900

# WebDriver's codes for the keys the walkthrough presses (Playwright takes the names themselves).
KEYS = {"ArrowLeft": "\ue012"}

# Collects what Playwright's page events give for free: uncaught errors, rejected promises, console.error.
COLLECT_ERRORS = """
window.__errors = [];
addEventListener('error', (e) => __errors.push(`page error: ${e.message}`));
addEventListener('unhandledrejection', (e) => __errors.push(`unhandled rejection: ${e.reason?.message ?? e.reason}`));
const original = console.error;
console.error = (...a) => { __errors.push(`console: ${a.join(' ')}`); original.apply(console, a); };
"""


def missing(engine: str) -> str | None:
    """Why `engine` cannot run here (a missing program, with the package that brings it), or None."""
    if engine == "chromium":
        return None if CHROMIUM.exists() else "Debian's Chromium (/usr/bin/chromium, package chromium) is not installed"
    if engine == "firefox":
        return None if firefox_binary() else "Firefox (firefox-esr, package firefox-esr) is not installed"
    if engine == "webkit":
        if not shutil.which(WEBKIT_DRIVER):
            return "WebKitGTK's WebDriver (WebKitWebDriver, package webkit2gtk-driver) is not installed"
        if not shutil.which("Xvfb"):
            return "Xvfb (package xvfb), which WebKitGTK needs to draw without a screen, is not installed"
        return None
    raise ValueError(engine)


def firefox_binary() -> str | None:
    return next(filter(None, map(shutil.which, FIREFOX_NAMES)), None)


class Driver:
    """The page in one engine: the primitives each engine implements, and waiting/reading built on them."""

    name = ""

    # -- primitives ---------------------------------------------------------------------------------------
    def goto(self, url: str) -> None:
        raise NotImplementedError

    def js(self, body: str, *args):
        """Run a function body (`return ...`, arguments as `arguments[i]`) in the page; its JSON-able result."""
        raise NotImplementedError

    def click(self, selector: str) -> None:
        """Click the element (CSS selector, or XPath when it starts with '/' or '(')."""
        raise NotImplementedError

    def fill(self, selector: str, text: str) -> None:
        raise NotImplementedError

    def press(self, selector: str, key: str) -> None:
        """Press a key (a name from KEYS) with the element focused."""
        raise NotImplementedError

    def hover(self, selector: str) -> None:
        raise NotImplementedError

    def click_at(self, x: float, y: float) -> None:
        """Click the point (x, y) of the viewport, in CSS pixels."""
        raise NotImplementedError

    def screenshot(self, path: Path) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- built on them ------------------------------------------------------------------------------------
    def open(self, url: str) -> None:
        self.goto(url)
        self.js(COLLECT_ERRORS)

    def errors(self) -> list[str]:
        return self.js("return window.__errors || ['the error collector is gone (the page reloaded?)']")

    def resources(self) -> list[str]:
        """Every URL the page fetched (the document, modules, stylesheets, API calls)."""
        return self.js("return [location.href, ...performance.getEntriesByType('resource').map((e) => e.name)]")

    def wait(self, condition: str, what: str, timeout: float = STEP_S) -> None:
        """Poll a JavaScript expression until it is truthy; fail naming `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self.js(f"return Boolean({condition})"):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)

    def wait_for(self, selector: str, timeout: float = STEP_S) -> None:
        self.wait(f"document.querySelector({selector!r})", selector, timeout)

    def wait_text(self, selector: str, text: str, timeout: float = STEP_S) -> None:
        """Wait until some element matching `selector` shows `text`."""
        cond = f"[...document.querySelectorAll({selector!r})].some((e) => e.innerText.includes({text!r}))"
        self.wait(cond, f"{text!r} in {selector}", timeout)

    def text(self, selector: str) -> str:
        """The rendered text of the first match (innerText: what a reader sees, as the engine lays it out)."""
        return self.js("return document.querySelector(arguments[0]).innerText", selector)

    def texts(self, selector: str) -> list[str]:
        return self.js("return [...document.querySelectorAll(arguments[0])].map((e) => e.innerText)", selector)

    def attr(self, selector: str, name: str) -> str | None:
        return self.js("return document.querySelector(arguments[0]).getAttribute(arguments[1])", selector, name)

    def click_cell(self, canvas: str, row: int, col: int) -> None:
        """Click cell (row, col) of a heatmap canvas where a pointer would, from the grid it publishes."""
        x, y = self.js(
            """const c = document.querySelector(arguments[0]);
               c.scrollIntoView({block: 'center'});
               const g = JSON.parse(c.dataset.grid);
               const r = c.getBoundingClientRect();
               return [r.left + g.x + (arguments[2] + 0.5) * g.w, r.top + g.y + (arguments[1] + 0.5) * g.h];""",
            canvas,
            row,
            col,
        )
        self.click_at(x, y)

    def shot(self, label: str) -> Path:
        path = ARTIFACTS / "screenshots" / f"engines-{self.name}-{label}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.screenshot(path)
        return path


def _is_xpath(selector: str) -> bool:
    return selector.startswith(("/", "("))


class ChromiumDriver(Driver):
    """A Playwright page in Debian's Chromium (the session's browser from conftest.py)."""

    name = "chromium"

    def __init__(self, browser):
        self.context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        self.context.set_default_timeout(ms(STEP_S))  # Playwright's own default (30 s) is short on a busy machine
        self.page = self.context.new_page()

    def goto(self, url):
        self.page.goto(url)

    def js(self, body, *args):
        return self.page.evaluate("(a) => (function () {" + body + "\n}).apply(null, a)", list(args))

    def _at(self, selector):
        return self.page.locator(f"xpath={selector}" if _is_xpath(selector) else selector).first

    def click(self, selector):
        self._at(selector).click()

    def fill(self, selector, text):
        self._at(selector).fill(text)

    def press(self, selector, key):
        self._at(selector).press(key)

    def hover(self, selector):
        self._at(selector).hover()

    def click_at(self, x, y):
        self.page.mouse.click(x, y)

    def screenshot(self, path):
        self.page.screenshot(path=str(path), full_page=True)

    def close(self):
        self.context.close()


class _ElementDriver(Driver):
    """Clicks, typing and keys through a WebDriver-style element (Marionette's and Selenium's alike)."""

    def _at(self, selector):
        raise NotImplementedError

    def click(self, selector):
        self._at(selector).click()

    def fill(self, selector, text):
        el = self._at(selector)
        el.clear()
        el.send_keys(text)

    def press(self, selector, key):
        self._at(selector).send_keys(KEYS[key])


class FirefoxDriver(_ElementDriver):
    """Firefox (headless) started and driven by Mozilla's Marionette client, with a fresh profile."""

    name = "firefox"

    def __init__(self):
        with warnings.catch_warnings():  # mozinfo and mozrunner call deprecated stdlib and distro functions
            warnings.simplefilter("ignore", DeprecationWarning)
            from marionette_driver.marionette import Marionette

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.m = Marionette(
            bin=firefox_binary(),
            port=0,
            headless=True,
            gecko_log=str(ARTIFACTS / "firefox.log"),
            startup_timeout=2 * STEP_S,
        )
        self.m.start_session()
        self.m.set_window_rect(width=WIDTH, height=HEIGHT)

    def goto(self, url):
        self.m.navigate(url)

    def js(self, body, *args):
        return self.m.execute_script(body, script_args=list(args), sandbox=None)

    def _at(self, selector):
        from marionette_driver.by import By

        return self.m.find_element(By.XPATH if _is_xpath(selector) else By.CSS_SELECTOR, selector)

    def _pointer(self):
        return self.m.actions.sequence("pointer", "mouse", {"pointerType": "mouse"})

    def hover(self, selector):
        self._pointer().pointer_move(0, 0, origin=self._at(selector)).perform()

    def click_at(self, x, y):
        self._pointer().pointer_move(round(x), round(y)).click().perform()

    def screenshot(self, path):
        path.write_bytes(self.m.screenshot(format="binary", full=True))

    def close(self):
        self.m.cleanup()
        # The temporary profile cleans itself up again when collected; at interpreter exit that fails noisily.
        del self.m
        gc.collect()


class WebKitDriver(_ElementDriver):
    """WebKitGTK's MiniBrowser driven by WebKitWebDriver through Selenium, on a private Xvfb display."""

    name = "webkit"

    def __init__(self):
        from selenium import webdriver

        # -displayfd: the server picks a free display number and writes it on the pipe when it is ready.
        self.xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", "1", "-screen", "0", f"{WIDTH + 80}x{HEIGHT + 200}x24", "-nolisten", "tcp"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            display = self.xvfb.stdout.readline().decode().strip()
            if not display:
                raise RuntimeError("Xvfb did not start")
            service = webdriver.WebKitGTKService(
                executable_path=shutil.which(WEBKIT_DRIVER), env={**os.environ, "DISPLAY": f":{display}"}
            )
            self.d = webdriver.WebKitGTK(options=webdriver.WebKitGTKOptions(), service=service)
            self.d.set_window_size(WIDTH, HEIGHT)
        except BaseException:
            self.xvfb.terminate()
            self.xvfb.wait(10)
            raise

    def goto(self, url):
        self.d.get(url)

    def js(self, body, *args):
        return self.d.execute_script(body, *args)

    def _at(self, selector):
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.XPATH if _is_xpath(selector) else By.CSS_SELECTOR, selector)

    def hover(self, selector):
        from selenium.webdriver import ActionChains

        ActionChains(self.d).move_to_element(self._at(selector)).perform()

    def click_at(self, x, y):
        from selenium.webdriver.common.actions.action_builder import ActionBuilder

        actions = ActionBuilder(self.d)
        actions.pointer_action.move_to_location(round(x), round(y)).click()
        actions.perform()

    def screenshot(self, path):
        self.d.save_screenshot(str(path))

    def close(self):
        try:
            self.d.quit()
        finally:
            self.xvfb.terminate()
            self.xvfb.wait(10)
