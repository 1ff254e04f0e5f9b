"""Load test of `glasslab serve` on loopback, and the first screen's latency.

Starts a real server process (`glasslab serve --no-browser` on 127.0.0.1), then:

1. Overview latency: `POST /api/overview` for fresh 12-token prompts (cold: the model runs) against one plain
   forward pass of the same prompt in this process, and re-selecting another position of the same prompt
   (warm: no model call), interleaved.
2. Load: N clients (default 16) for D seconds (default 180), each sending a mix of requests (new and repeated
   prompts, overview, predict, attention, DLA, ablation, generation, steering, experiments), with the
   server's resident memory sampled every second. Prints per endpoint p50/p95/p99 latency and errors, and the
   memory at the start and end of the run with its slope over the second half.

    .venv/bin/python benchmarks/bench_server_load.py                       # default model, 16 clients, 180 s
    .venv/bin/python benchmarks/bench_server_load.py --clients 16 --duration 60 --model PATH

Exit status 1 if any request failed or memory grew by more than --max-growth-mib over the second half.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import httpx

# fmt: off
WORDS = [
    "the", "cat", "dog", "house", "river", "city", "Paris", "London", "Mary", "John", "went", "store", "gave",
    "drink", "to", "and", "of", "in", "on", "a", "is", "was", "capital", "France", "because", "when", "after",
    "before", "small", "large", "old", "new", "red", "blue", "music", "science",
]
# fmt: on
RUN = uuid.uuid4().hex[:8]  # experiment names of this run (the store outlives it)
PAIRS = [["I love this", "I hate this"], ["What a wonderful day", "What a terrible day"]]


def prompt(rng: random.Random, words: int = 11) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(model: str | None, port: int) -> subprocess.Popen:
    command = [sys.executable, "-c", "from glasslab.cli.main import main; main()", "serve", "--no-browser"]
    command += ["--port", str(port)]
    if model:
        command += ["--model", model]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/model", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start in 10 minutes")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def overview_latency(url: str, model_source: str | None, repeats: int) -> None:
    """Cold overview (new prompt) vs one plain forward pass in this process; warm re-selection."""
    import glasslab as gl

    model = gl.load(model_source)
    rng = random.Random(0)
    cold, warm, forward, tokens = [], [], [], []
    with httpx.Client(base_url=url, timeout=120) as c:
        c.post("/api/overview", json={"prompt": prompt(rng)})  # warm-up
        for _ in range(repeats):
            text = prompt(rng)
            tokens.append(len(model.to_str_tokens(text)))
            start = time.perf_counter()
            assert c.post("/api/overview", json={"prompt": text}).status_code == 200
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            assert c.post("/api/overview", json={"prompt": text, "position": 3}).status_code == 200
            warm.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.run(text)
            forward.append(time.perf_counter() - start)
    print(f"overview, {statistics.median(tokens):.0f}-token prompts (BOS included), median of {repeats}:")
    print(f"  cold (new prompt, model runs):      {statistics.median(cold) * 1000:7.0f} ms")
    print(f"  re-select another position (warm):  {statistics.median(warm) * 1000:7.0f} ms")
    print(f"  one plain forward pass (in-process): {statistics.median(forward) * 1000:6.0f} ms")
    print(f"  cold overview / plain forward:       {statistics.median(cold) / statistics.median(forward):6.2f}")


def pick(rng: random.Random, text: str, saved: list[str]) -> tuple[str, str, str, dict | None]:
    """One request of the mix: (label, method, path, body)."""
    choice = rng.random()
    if choice < 0.2:
        return "overview", "POST", "/api/overview", {"prompt": text}
    if choice < 0.3:
        return "tokens", "POST", "/api/tokens", {"prompt": text}
    if choice < 0.4:
        return (
            "attention",
            "POST",
            "/api/attention",
            {"prompt": text, "layer": rng.randrange(4), "head": rng.randrange(4)},
        )
    if choice < 0.5:
        return "dla", "POST", "/api/dla", {"prompt": text}
    if choice < 0.58:
        return "predict", "POST", "/api/predict", {"prompt": text, "k": 5}
    if choice < 0.68:
        return "ablate", "POST", "/api/ablate", {"prompt": text, "heads": [[rng.randrange(4), rng.randrange(4)]]}
    if choice < 0.74:
        return "generate", "POST", "/api/generate", {"prompt": text, "max_new_tokens": 5}
    if choice < 0.78:
        body = {"prompt": text, "pairs": PAIRS, "layer": 3, "scales": [4.0], "max_new_tokens": 4}
        return "steer", "POST", "/api/steer", body
    if choice < 0.88 or not saved:
        body = {"name": f"load-{RUN}-{rng.getrandbits(64):x}", "prompt": text, "results": {"x": [1.0] * 500}}
        return "experiment save", "POST", "/api/experiments", body
    if choice < 0.94:
        return "experiment list", "GET", "/api/experiments", None
    return "experiment delete", "DELETE", f"/api/experiments/{saved.pop(rng.randrange(len(saved)))}", None


def client_loop(url: str, seed: int, stop: threading.Event, latencies, errors, lock) -> None:
    rng = random.Random(seed)
    recent = [prompt(rng) for _ in range(4)]
    saved: list[str] = []
    with httpx.Client(base_url=url, timeout=300) as c:
        while not stop.is_set():
            text = rng.choice(recent) if rng.random() < 0.5 else prompt(rng)
            recent[rng.randrange(len(recent))] = text
            name, method, path, body = pick(rng, text, saved)
            start = time.perf_counter()
            try:
                response = c.request(method, path, json=body)
                ok = response.status_code < 300
                if ok and name == "experiment save":
                    saved.append(response.json()["id"])
                detail = "" if ok else f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - start
            with lock:
                latencies[name].append(elapsed)
                if not ok:
                    errors.append(f"{name}: {detail}")
        for experiment_id in saved:  # leave the user's store as it was
            c.delete(f"/api/experiments/{experiment_id}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model for the server (default: the offline default)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--overview-repeats", type=int, default=7, help="0 skips the overview latency phase")
    parser.add_argument("--max-growth-mib", type=float, default=100.0)
    args = parser.parse_args()
    os.environ.setdefault("GLASSLAB_PROGRESS", "0")
    url = f"http://127.0.0.1:{args.port}"
    server = start_server(args.model, args.port)
    try:
        if args.overview_repeats:
            overview_latency(url, args.model, args.overview_repeats)
        latencies: dict[str, list[float]] = defaultdict(list)
        errors: list[str] = []
        lock, stop = threading.Lock(), threading.Event()
        memory: list[tuple[float, float]] = []
        threads = [
            threading.Thread(target=client_loop, args=(url, seed, stop, latencies, errors, lock))
            for seed in range(args.clients)
        ]
        started = time.monotonic()
        for t in threads:
            t.start()
        while time.monotonic() - started < args.duration:
            memory.append((time.monotonic() - started, rss_mib(server.pid)))
            time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(30)
    total = sum(len(v) for v in latencies.values())
    print(f"\nload: {args.clients} clients for {elapsed:.0f} s on loopback: {total} requests, {len(errors)} errors")
    print(f"{'endpoint':<20}{'count':>7}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
    for name, values in sorted(latencies.items()):
        p50, p95, p99 = (percentile(values, q) * 1000 for q in (50, 95, 99))
        print(f"{name:<20}{len(values):>7}{p50:>10.0f}{p95:>10.0f}{p99:>10.0f}")
    half = [m for t, m in memory if t >= elapsed / 2]
    growth = half[-1] - half[0] if len(half) > 1 else 0.0
    print(
        f"server RSS: start {memory[0][1]:.0f} MiB, max {max(m for _, m in memory):.0f} MiB, "
        f"end {memory[-1][1]:.0f} MiB; "
        f"second half: {half[0]:.0f} -> {half[-1]:.0f} MiB ({growth:+.0f} MiB)"
    )
    for line in errors[:10]:
        print("error:", line)
    if errors or growth > args.max_growth_mib:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
