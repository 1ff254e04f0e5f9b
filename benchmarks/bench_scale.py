"""Scale benchmark (issue 21): harvest and SAE-training throughput in this process and on a local Ray cluster
with 1 and 2 workers, the scaling ratios, and each worker's memory, on the offline default model (Gemma 3
270M, CPU).

    .venv/bin/python benchmarks/bench_scale.py [--tokens 32768] [--hook blocks.6.resid_post] [--repeats 3]
        [--train-tokens 65536]

The training reads the last harvest (``activations=``), so it times the SAE's steps and not the model; its
figure is the training loop's own time (``training.json``'s seconds), without Ray Train's start-up, which
the total wall time shown beside it includes.

Each setting first runs a small harvest so its workers have started and loaded the model (they are then
reused), then times --repeats harvests of --tokens rows (medians). Settings run one after another rather
than interleaved, because changing the worker count starts new workers. On a machine with two cores the
driver (reading and tokenising the corpus, writing the manifest) shares them with the workers, so two
workers cannot reach twice one worker's speed here; on a cluster each worker has its own cores or GPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import glasslab as gl
from glasslab.activations import harvest
from glasslab.cluster import ClusterSpec
from glasslab.dictionaries.train import TrainConfig
from glasslab.methods.features.training import train_sae

SETTINGS = {"in this process": None, "Ray, 1 worker": 1, "Ray, 2 workers": 2}


def worker_memory_mb() -> list[float]:
    """Resident memory of each live harvest worker (Ray names an actor's process after its class)."""
    sizes = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::_Worker"):
                status = (entry / "status").read_text()
                sizes.append(int(status.split("VmRSS:")[1].split()[0]) / 1024)
        except (OSError, IndexError):
            continue
    return sizes


def train_seconds(model: gl.Model, url: str, hook: str, tokens: int, workers: int | None, out: Path) -> tuple:
    """(training-loop seconds, wall seconds) of a TopK SAE (expansion 8, k 32, batch 4096) read from ``url``."""
    config = TrainConfig(hook=hook, tokens=tokens, buffer_tokens=tokens, activations=url)
    cluster = {} if workers is None else {"cluster": "local", "workers": workers}
    start = time.perf_counter()
    run = train_sae(model, config, out=out, evaluate_tokens=0, fresh=True, **cluster)
    return run.training["seconds"], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32_768)
    parser.add_argument("--hook", default="blocks.6.resid_post")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-tokens", type=int, default=65_536)
    args = parser.parse_args()
    model = gl.load()
    folder = Path(tempfile.mkdtemp(prefix="glasslab-bench-scale-"))
    seconds: dict[str, float] = {}
    memory: dict[str, list[float]] = {}
    for name, workers in SETTINGS.items():
        spec = ClusterSpec() if workers is None else ClusterSpec("local", workers=workers)
        sizes = {"shard_tokens": 4096, "fresh": True, "cluster": spec}
        harvest(model, args.hook, str(folder / "warm-up"), tokens=2048, **sizes)
        times = []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            harvest(model, args.hook, str(folder / f"h{repeat}"), tokens=args.tokens, **sizes)
            times.append(time.perf_counter() - start)
        seconds[name] = statistics.median(times)
        memory[name] = worker_memory_mb() if workers else []
    print(f"harvest of {args.tokens:,} rows at {args.hook} ({model.name}, float32, shards of 4,096 rows)")
    base = seconds["Ray, 1 worker"]
    for name, value in seconds.items():
        rss = ", ".join(f"{mb:,.0f}" for mb in memory[name]) or "-"
        print(
            f"  {name:<16} {value:7.1f} s  {args.tokens / value:8,.0f} rows/s  {base / value:5.2f}x Ray 1 worker"
            f"  worker RSS MB: {rss}"
        )
    print(f"scaling, 2 workers / 1 worker: {seconds['Ray, 1 worker'] / seconds['Ray, 2 workers']:.2f}x")
    url = str(folder / "h0")
    trained = {
        name: train_seconds(model, url, args.hook, args.train_tokens, w, folder / f"sae{w}")
        for name, w in SETTINGS.items()
    }
    print(f"SAE training on {args.train_tokens:,} harvested rows (TopK, 5,120 features, k 32, batch 4,096)")
    loop_base = trained["in this process"][0]
    for name, (loop, wall) in trained.items():
        print(
            f"  {name:<16} loop {loop:7.1f} s  {args.train_tokens / loop:8,.0f} rows/s  {loop_base / loop:5.2f}x here"
            f"  (wall {wall:.1f} s)"
        )
    one, two = trained["Ray, 1 worker"][0], trained["Ray, 2 workers"][0]
    print(f"scaling, 2 workers / 1 worker: {one / two:.2f}x")


if __name__ == "__main__":
    main()
