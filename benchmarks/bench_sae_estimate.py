"""The SAE training-time estimate against the real time of the same training, in a fresh process each repeat.

Each repeat estimates a training, then runs it (as the workbench does: the estimate first, the training
right after, in one process) and prints the estimate's parts, the real time and their ratio. By default the
training is a small one on a tiny random Llama (the configuration the test suite counts sequences on); with
``--default`` it is a short training on the offline default model's layer 6. A ratio near 1 is the goal; a
machine that other work shares moves both numbers, so quote the median ratio of several repeats.

    .venv/bin/python benchmarks/bench_sae_estimate.py --repeats 3
    .venv/bin/python benchmarks/bench_sae_estimate.py --default --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("GLASSLAB_PROGRESS", "0")

ROOT = Path(__file__).resolve().parents[1]


def one_repeat(default_model: bool) -> dict:
    """Estimate, then train, in this process; the figures as a dict."""
    sys.path.insert(0, str(ROOT))
    import glasslab as gl
    from glasslab.dictionaries.train import TrainConfig
    from glasslab.methods.features.estimate import estimate_training
    from glasslab.methods.features.training import train_sae

    if default_model:
        model = gl.load()
        config = TrainConfig("blocks.6.resid_post", expansion=2, k=32, tokens=4096 * 8, harvest_tokens=8192)
        evaluate = 1024
    else:
        from tests.tiny import tiny_model

        model = tiny_model("llama")
        config = TrainConfig(
            "blocks.1.resid_post", expansion=4, k=4, tokens=256 * 24, harvest_tokens=6000, buffer_tokens=6000,
            batch_size=256, seq_len=64,
        )  # fmt: skip
        evaluate = 512
    estimate = estimate_training(model, config, evaluate_tokens=evaluate)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GLASSLAB_HOME"] = str(Path(tmp) / "home")  # the checkpoint folder
        start = time.perf_counter()
        train_sae(model, config, out=Path(tmp) / "sae", evaluate_tokens=evaluate, evaluate_loss_tokens=0)
        actual = time.perf_counter() - start
    return {"estimate": estimate.to_dict(), "actual_s": actual}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--default", action="store_true", help="the offline default model (from your store)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child process's single repeat
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_repeat(args.default)))
        return
    ratios = []
    for repeat in range(args.repeats):
        command = [sys.executable, __file__, "--one", *(["--default"] if args.default else [])]
        figures = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        estimate, actual = figures["estimate"], figures["actual_s"]
        ratios.append(estimate["seconds"] / actual)
        parts = ", ".join(f"{k} {estimate[k]}" for k in ("text_s", "harvest_s", "train_s", "evaluate_s", "fixed_s"))
        print(f"repeat {repeat + 1}: estimate {estimate['seconds']:.1f} s ({parts}); real {actual:.1f} s; "
              f"ratio {ratios[-1]:.2f}; load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"median estimate / real: {statistics.median(ratios):.2f} over {len(ratios)} repeats")


if __name__ == "__main__":
    main()
