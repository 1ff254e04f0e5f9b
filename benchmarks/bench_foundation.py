"""Foundation benchmark: glasslab's runs against the raw Hugging Face forward and TransformerBridge.

On the offline default model (Gemma 3 270M, float32, CPU) at 128 tokens it times
  (a) the raw Hugging Face forward,
  (b) glasslab's run caching blocks.*.resid_post,
  (c) glasslab's run caching every canonical hook,
  (d) TransformerLens TransformerBridge's run_with_cache (if transformer-lens is installed),
and prints the ratios measured in this run (targets: b/a <= 1.10, c faster than d), plus the first
(converting) and repeated load times and the peak memory. Timings are medians of --repeats runs after
a warm-up, interleaved so that machine noise hits every contender alike.

    .venv/bin/python benchmarks/bench_foundation.py [--repeats 7] [--first-load]

--first-load also times a first load into an empty temporary store (converts the GGUF: ~1 minute).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable

import torch
from timing import interleaved_medians

import glasslab as gl

N_TOKENS = 128


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_load_in_subprocess(store: str | None) -> float:
    """Seconds for gl.load() in a fresh interpreter (import time excluded)."""
    env = dict(os.environ)
    if store:
        env["GLASSLAB_HOME"] = store
    code = "import time, glasslab as gl; t = time.perf_counter(); gl.load(); print(time.perf_counter() - t)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def make_bridge(model: gl.Model) -> Callable[[torch.Tensor], object] | None:
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:
        return None
    from transformers import AutoModelForCausalLM

    # Booting rewires the model it is given (eager attention, its own hooks): give it its own copy.
    own_copy = AutoModelForCausalLM.from_pretrained(model.stored_at, dtype=torch.float32)
    bridge = TransformerBridge.boot_transformers(
        str(model.stored_at), hf_model=own_copy, tokenizer=model.tokenizer, device="cpu"
    )

    def run(tokens: torch.Tensor):
        with torch.inference_mode():
            return bridge.run_with_cache(tokens)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--first-load", action="store_true", help="also time a converting first load")
    args = parser.parse_args()
    torch.manual_seed(0)

    if args.first_load:
        with tempfile.TemporaryDirectory() as store:
            print(f"first load (converts GGUF into an empty store): {time_load_in_subprocess(store):.1f} s")
    gl.load()  # make sure the default store is converted before timing repeated loads
    print(f"repeated load (from the store): {time_load_in_subprocess(None):.2f} s")

    model = gl.load()
    after_load = peak_rss_mib()
    tokens = torch.randint(10, model.vocab_size, (1, N_TOKENS))
    tokens[0, 0] = model.tokenizer.bos_token_id

    def raw():
        with torch.inference_mode():
            return model.hf(input_ids=tokens).logits

    contenders: dict[str, Callable[[], object]] = {
        "(a) HF forward": raw,
        "(b) glasslab resid_post cache": lambda: model.run(tokens, cache=["blocks.*.resid_post"]),
        "(c) glasslab every hook": lambda: model.run(tokens, cache=["*"]),
    }
    bridge = make_bridge(model)
    if bridge is not None:
        contenders["(d) TransformerBridge run_with_cache"] = lambda: bridge(tokens)
    else:
        print("transformer-lens not installed: (d) skipped (pip install -e '.[peers]')")

    medians = interleaved_medians(contenders, args.repeats)
    print(f"\nGemma 3 270M, float32, {N_TOKENS} tokens, {torch.get_num_threads()} threads, median of {args.repeats}")
    for name, seconds in medians.items():
        print(f"  {name:40s} {seconds * 1000:8.1f} ms")
    a, b, c = (medians[k] for k in list(contenders)[:3])
    print(f"\n  b/a = {b / a:.3f}   (target <= 1.10)")
    print(f"  c/a = {c / a:.3f}")
    if bridge is not None:
        d = medians["(d) TransformerBridge run_with_cache"]
        print(f"  c/d = {c / d:.3f}   (target < 1: glasslab caching everything is faster)")
    print(f"\npeak RSS: {after_load:.0f} MiB after loading, {peak_rss_mib():.0f} MiB after all runs")


if __name__ == "__main__":
    main()
