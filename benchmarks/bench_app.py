"""Front-end speed of the workbench in Chromium, on the default model (issue 6, item 6).

Measures, with the real server (uvicorn in a thread) and Debian's Chromium driven by Playwright:

1. time to the first full analysis of a 12-token prompt: from the Analyse click to the first panel drawn,
   for fresh prompts (nothing cached), split into waiting for the one `overview` request and drawing after
   it arrived, beside the server's own time for other fresh prompts of the same length asked directly;
2. re-render time when switching panels, tokens and heads (target < 100 ms), and the API requests made
   meanwhile (target: none, once the background prefetch is done);
3. a 512-token prompt: the longest main-thread task and the total blocking time (sum of each long task's
   time over 50 ms) while it is analysed and its panels are opened, and the worst delay of a 50 ms timer
   (how long a key press could wait).

Run: .venv/bin/python benchmarks/bench_app.py [--repeats 5]
Timings depend on the machine's load: quote them with `uptime` and prefer the browser-vs-server split.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import threading
import time
from pathlib import Path

import httpx

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Long tasks and event-loop lag, recorded from the first script on the page.
PROBE = """
window.__long = [];
new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__long.push(e.duration); })
  .observe({ type: 'longtask', buffered: true });
window.__lag = [];
(function tick(last) {
  setTimeout(() => { const now = performance.now(); window.__lag.push(now - last - 50); tick(now); }, 50);
})(performance.now());
"""
SWITCH = """async ([selector]) => {
  const t0 = performance.now();
  document.querySelector(selector).click();
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  return [performance.now() - t0, Number(document.getElementById('panel').dataset.renderMs)];
}"""
SUBJECTS = [
    "Eiffel Tower",
    "Colosseum",
    "Big Ben",
    "Brandenburg Gate",
    "Golden Gate Bridge",
    "Sagrada Familia",
    "Acropolis",
    "Hagia Sophia",
    "Space Needle",
    "Atomium",
    "Little Mermaid",
    "Charles Bridge",
]


def start_server(model, db: Path):
    import uvicorn

    from glasslab.app.server import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(model, experiments_db=db), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def twelve_token_prompts(http: httpx.Client, count: int) -> list[str]:
    """Fresh prompts of exactly 12 tokens (BOS included), so no cache can answer them."""
    out = []
    for subject in SUBJECTS:
        for tail in (
            "is a famous building in the city of",
            "stands in the middle of the city of",
            "can be found in the city of",
        ):
            prompt = f"The {subject} {tail}"
            if http.post("/api/tokens", json={"prompt": prompt}).json()["n_tokens"] == 12:
                out.append(prompt)
                break
        if len(out) == count:
            return out
    raise SystemExit("could not build enough 12-token prompts")


def long_prompt(model, n: int = 512) -> str:
    words = (
        "The river runs past the old mill, where the miller counts sacks of grain and sings to the cat. " * 80
    ).split(" ")
    lo, hi = 1, len(words)
    while lo < hi:  # the longest prefix with at most n tokens
        mid = (lo + hi + 1) // 2
        if int(model.tokenize(" ".join(words[:mid])).attention_mask.sum()) <= n:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import tempfile

    from playwright.sync_api import sync_playwright

    import glasslab as gl

    model = gl.load()
    with tempfile.TemporaryDirectory() as tmp:
        server, thread, url = start_server(model, Path(tmp) / "experiments.sqlite")
        http = httpx.Client(base_url=url, timeout=300)
        prompts = twelve_token_prompts(http, 2 * args.repeats + 1)
        http.post("/api/overview", json={"prompt": prompts.pop(), "k": 10, "position": -1})  # warm-up
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1320, "height": 900})
            page.add_init_script(PROBE)
            requests: list[str] = []
            page.on("request", lambda r: "/api/" in r.url and requests.append(r.url))
            page.goto(url + "/")
            page.wait_for_selector("body[data-ready=true]")

            # 1. First full analysis, interleaved with the server's own time on other fresh prompts.
            browser_s, request_s, server_s = [], [], []
            for i in range(args.repeats):
                page.fill("#prompt", prompts[2 * i])
                page.click("#analyse")
                page.wait_for_function(f"window.glasslab.timings.analyses.length === {i + 1}", timeout=120_000)
                browser_s.append(page.evaluate("window.glasslab.timings.analyses.at(-1)") / 1000)
                request_s.append(page.evaluate("window.glasslab.timings.requests.at(-1)") / 1000)
                page.wait_for_selector("body[data-prefetch=done]", timeout=300_000)
                start = time.perf_counter()
                http.post(
                    "/api/overview", json={"prompt": prompts[2 * i + 1], "k": 10, "position": -1}
                ).raise_for_status()
                server_s.append(time.perf_counter() - start)

            # 2. Switching panels, tokens and heads on the last prompt, after the prefetch.
            before = len(requests)
            switches: dict[str, list[tuple[float, float]]] = {"panel": [], "token": [], "head": []}
            for panel in ["predictions", "attention", "lens", "dla", "roles", "ablation", "predictions"] * 2:
                if panel == "roles":
                    continue
                switches["panel"].append(page.evaluate(SWITCH, [f"#tab-{panel}"]))
            for panel in ["predictions", "attention", "dla", "lens"]:
                page.click(f"#tab-{panel}")
                for pos in (3, 7, 1, 11, 5):
                    switches["token"].append(page.evaluate(SWITCH, [f'#tokens .tok[data-pos="{pos}"]']))
            page.click("#tab-attention")
            for layer, head in [(0, 1), (5, 2), (9, 3), (17, 0), (3, 3)]:
                t = page.evaluate(
                    """async ([layer, head]) => {
                      const c = document.querySelector('#panel canvas.heatmap');
                      const g = JSON.parse(c.dataset.grid), r = c.getBoundingClientRect();
                      const t0 = performance.now();
                      c.dispatchEvent(new MouseEvent('click', { bubbles: true,
                        clientX: r.left + g.x + (head + 0.5) * g.w, clientY: r.top + g.y + (layer + 0.5) * g.h }));
                      await new Promise((res) => requestAnimationFrame(() => setTimeout(res, 0)));
                      return [performance.now() - t0, Number(document.getElementById('panel').dataset.renderMs)];
                    }""",
                    [layer, head],
                )
                switches["head"].append(t)
            switch_requests = requests[before:]
            prefetch_s = page.evaluate("window.glasslab.prefetchTimes")

            # 3. A 512-token prompt: main-thread blocking while it is analysed and browsed.
            text = long_prompt(model)
            page.evaluate("window.__long = []; window.__lag = []")
            page.fill("#prompt", text)
            start = time.perf_counter()
            page.click("#tab-predictions")
            page.click("#analyse")
            page.wait_for_function(f"window.glasslab.timings.analyses.length === {args.repeats + 1}", timeout=600_000)
            long_analysis = time.perf_counter() - start
            long_switch = []
            for panel in ["attention", "dla", "predictions", "lens", "attention"]:
                long_switch.append(page.evaluate(SWITCH, [f"#tab-{panel}"]))
            page.wait_for_timeout(1000)
            n_tokens = page.locator("#tokens").get_attribute("data-n")
            strip_nodes = page.locator("#tokens .tok").count()
            long_tasks = page.evaluate("window.__long")
            lag = page.evaluate("window.__lag")
            browser.close()
        server.should_exit = True
        thread.join(timeout=30)

    def med(xs):
        return statistics.median(xs) if xs else float("nan")

    drawing = [b - r for b, r in zip(browser_s, request_s, strict=True)]
    load = os.getloadavg()
    print(f"machine load average (1/5/15 min): {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    print(f"model: {model.name}, {args.repeats} fresh 12-token prompts")
    print(
        f"first full analysis in the browser (click -> panel drawn): median {med(browser_s):.3f} s "
        f"(min {min(browser_s):.3f}, max {max(browser_s):.3f})"
    )
    print(f"  of which waiting for the overview request:             median {med(request_s):.3f} s")
    print(f"  drawing in the browser after the answer:               median {med(drawing) * 1000:.1f} ms")
    print(f"  the same request for other fresh prompts, server alone: median {med(server_s):.3f} s")
    print(f"background prefetch after each analysis (every head, every position): median {med(prefetch_s):.2f} s")
    for kind, xs in switches.items():
        wall = [x[0] for x in xs]
        render = [x[1] for x in xs]
        print(
            f"switch {kind:5s}: to next frame median {med(wall):6.1f} ms, max {max(wall):6.1f} ms; "
            f"panel render median {med(render):5.1f} ms ({len(xs)} switches)"
        )
    print(f"API requests while switching: {len(switch_requests)}" + (f" {switch_requests}" if switch_requests else ""))
    total_blocking = sum(max(0.0, d - 50) for d in long_tasks)
    print(
        f"{n_tokens}-token prompt: analysis {long_analysis:.2f} s; token strip shows {strip_nodes} tokens; "
        f"panel switches median {med([x[0] for x in long_switch]):.1f} ms, max {max(x[0] for x in long_switch):.1f} ms"
    )
    print(
        f"  long tasks: {len(long_tasks)}, longest {max(long_tasks, default=0):.0f} ms, total blocking time "
        f"{total_blocking:.0f} ms; worst 50 ms timer delay {max(lag, default=0):.0f} ms"
    )


if __name__ == "__main__":
    main()
