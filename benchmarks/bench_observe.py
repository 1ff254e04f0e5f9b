"""Observe benchmark: the first screen of an analysis against one plain forward pass.

On the offline default model (Gemma 3 270M, float32, CPU) with a 12-token prompt, times
  (a) one plain Hugging Face forward pass (logits for every position),
  (b) glasslab.overview: predictions, every attention pattern, the logit lens over all layers and
      per-head direct logit attribution for the top prediction,
and prints b/a (target < 2). Also times the single views for reference. Medians of --repeats runs
after a warm-up, interleaved so machine noise hits every contender alike.

    .venv/bin/python benchmarks/bench_observe.py [--repeats 9]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from timing import interleaved_medians

import glasslab as gl

PROMPT = "When Mary and John went to the store, John gave a drink to"  # BOS + 14 tokens on Gemma 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    model = gl.load()
    tokens = model.to_tokens(PROMPT)[:, :12]
    prompt = model.tokenizer.decode(tokens[0, 1:])  # the same 12 tokens as text (BOS is added back)
    assert torch.equal(model.to_tokens(prompt), tokens)

    def plain():
        with torch.inference_mode():
            return model.hf(input_ids=tokens).logits

    top = gl.predict(model, prompt).top[0].token_id
    contenders: dict[str, Callable[[], object]] = {
        "(a) HF forward": plain,
        "(b) glasslab overview": lambda: gl.overview(model, prompt),
        "    predict": lambda: gl.predict(model, prompt),
        "    attention": lambda: gl.attention(model, prompt),
        "    logit lens, all positions": lambda: gl.logit_lens(model, prompt),
        "    dla": lambda: gl.logit_attribution(model, prompt, target=top),
    }
    medians = interleaved_medians(contenders, args.repeats)
    threads = torch.get_num_threads()
    print(f"Gemma 3 270M, float32, {tokens.shape[1]} tokens, {threads} threads, median of {args.repeats}")
    for name, seconds in medians.items():
        print(f"  {name:32s} {seconds * 1000:8.1f} ms")
    ratio = medians["(b) glasslab overview"] / medians["(a) HF forward"]
    print(f"\n  overview / forward = {ratio:.2f}   (target < 2)")


if __name__ == "__main__":
    main()
