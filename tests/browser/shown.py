"""How the page formats numbers (dom.js fmt and pct), so tests can look for the API's values on screen, and
the panels it has (in tab order)."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable

PANELS = [
    "predictions",
    "attention",
    "roles",
    "lens",
    "dla",
    "neurons",
    "sae",
    "steering",
    "ablation",
    "patching",
    "circuit",
    "graph",
]


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "\u2013"
    a = abs(x)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        mantissa, exponent = f"{x:.2e}".split("e")
        return f"{mantissa}e{int(exponent):+d}"
    return f"{_js_fixed(x, 1 if a >= 100 else digits)}"


def pct(p: float) -> str:
    return f"{_js_fixed(100 * p, 3 if p < 0.001 else 1)}%"


def _js_fixed(x: float, digits: int) -> str:
    # Number.prototype.toFixed rounds the exact binary value half away from zero, like Python's decimal
    # formatting of the same double except on exact ties; the values compared here are never exact ties.
    if math.isnan(x):
        return "NaN"
    return f"{x:.{digits}f}"


def show_token(token: str) -> str:
    """dom.js showToken: spaces as no-break spaces, newlines and tabs as arrows, empty as the empty-set sign."""
    return token.replace(" ", "\u00a0").replace("\n", "\u21b5").replace("\t", "\u21e5") or "\u2205"


def forms(x: float | None, f: Callable[[float], str] = fmt, rel: float = 1e-5) -> set[str]:
    """How the page may print x with f: the page's number can come from another route than the test's API call
    (another batch, another endpoint), equal up to float rounding, and so round to the neighbouring string.
    None (no value, such as the baseline's projection) prints one way."""
    if x is None:
        return {f(x)}
    return {f(x * (1 - rel)), f(x), f(x * (1 + rel))}


def shows(text: str, template: str, *values: float, f: Callable[[float], str] = fmt) -> bool:
    """Whether `text` holds `template` ('{}' for each value) filled with a form of each value (see forms)."""
    return any(template.format(*filled) in text for filled in itertools.product(*(forms(v, f) for v in values)))


def demo_heads(text: str) -> tuple[list[list[int]], list[list[int]]]:
    """The induction demo's two head sets as its result line names them: (induction heads, random heads)."""
    hit, ctl = re.search(r"induction heads \(([^)]*)\).*random heads \(([^;]*);", text).groups()
    return [[int(a), int(b)] for a, b in re.findall(r"L(\d+)H(\d+)", hit)], [
        [int(a), int(b)] for a, b in re.findall(r"L(\d+)H(\d+)", ctl)
    ]


def run_induction_demo(page, server) -> tuple[str, list[list[int]], list[list[int]], dict, dict]:
    """Press the induction demo on the page's prompt and check its three values against the ablate API run on
    the heads it names (a second route); returns the result text, both head sets and the API's two answers."""
    prompt = page.page.input_value("#prompt")
    page.page.click("text=Top 3 induction heads vs 3 random heads")
    page.page.wait_for_selector("#panel .induction-result")
    text = page.page.inner_text("#panel .induction-result")
    induction, random = demo_heads(text)
    n = len(server.post("tokens", {"prompt": prompt})["tokens"])
    body = {"prompt": prompt, "position": n - 1, "how": "zero", "metric": "prob"}
    hit = server.post("ablate", {**body, "heads": induction})
    ctl = server.post("ablate", {**body, "heads": random})
    assert shows(page.page.inner_text("#panel .demo-clean"), "{}", hit["clean"], f=pct)
    assert shows(page.page.inner_text("#panel .demo-induction"), "{}", hit["ablated"], f=pct)
    assert shows(page.page.inner_text("#panel .demo-random"), "{}", ctl["ablated"], f=pct)
    return text, induction, random, hit, ctl
