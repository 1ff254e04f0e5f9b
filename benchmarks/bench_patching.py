"""Patching benchmark: a full resid_pre sweep (every layer x every position) against TransformerLens.

On the offline default model (Gemma 3 270M, float32, CPU) with a ~20-token IOI prompt pair, times
  (a) glasslab.activation_patching (batched: many patched runs per forward pass),
  (b) transformer_lens.patching.get_act_patch_resid_pre on a TransformerBridge of the same weights
      (one forward pass per cell),
  (c) glasslab.attribution_patching (gradient estimate: a constant number of passes),
checks that (a) and (b) agree, and prints b/a (target >= 3). glasslab runs before and after the
TransformerLens sweep and the two times are averaged, so machine noise hits both alike.

    .venv/bin/python benchmarks/bench_patching.py
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens's per-cell progress bar

import torch

import glasslab as gl
from glasslab.methods.patch.attribution_patching import attribution_patching
from glasslab.methods.patch.patching import activation_patching

CLEAN = "After the long day at work, when Mary and John went to the store, John gave a drink to"
CORRUPTED = "After the long day at work, when Mary and John went to the store, Mary gave a drink to"


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=None, help="glasslab rows per forward pass (auto)")
    args = parser.parse_args()
    from transformer_lens import patching
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM

    model = gl.load()
    clean, corrupted = model.to_tokens(CLEAN), model.to_tokens(CORRUPTED)
    assert clean.shape == corrupted.shape, "the prompts must have the same token length"
    own_copy = AutoModelForCausalLM.from_pretrained(model.stored_at, dtype=torch.float32)
    bridge = TransformerBridge.boot_transformers(
        str(model.stored_at), hf_model=own_copy, tokenizer=model.tokenizer, device="cpu"
    )
    mary, john = (model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (" Mary", " John"))
    kw = dict(target=" Mary", versus=" John", batch_size=args.batch_size)

    def ours():
        return activation_patching(model, clean, corrupted, **kw)

    def theirs():
        with torch.inference_mode():
            _, cache = bridge.run_with_cache(clean)
            return patching.get_act_patch_resid_pre(
                bridge, corrupted, cache, lambda logits: logits[0, -1, mary] - logits[0, -1, john]
            )

    activation_patching(model, clean, corrupted, **kw, layers=[0])  # warm-up
    first, t_first = timed(ours)
    reference, t_theirs = timed(theirs)
    _, t_second = timed(ours)
    _, t_attribution = timed(lambda: attribution_patching(model, clean, corrupted, **kw))
    t_ours = (t_first + t_second) / 2
    difference = (torch.tensor(first.raw) - reference.float()).abs().max().item()
    compared = attribution_patching(model, clean, corrupted, **kw, compare=True)
    cells = len(first.cells)
    print(
        f"Gemma 3 270M, float32, {clean.shape[1]} tokens, {cells} cells (resid_pre, layer x position), "
        f"{torch.get_num_threads()} threads"
    )
    runs = f"{t_first:.2f}, {t_second:.2f}; {first.forward_passes} passes"
    print(f"  (a) glasslab activation patching   {t_ours:8.2f} s  ({runs})")
    print(f"  (b) TransformerLens get_act_patch  {t_theirs:8.2f} s  ({cells} passes)")
    print(f"  (c) glasslab attribution patching  {t_attribution:8.2f} s  (3 passes + 1 backward)")
    print(f"\n  TransformerLens / glasslab = {t_theirs / t_ours:.2f}   (target >= 3)")
    print(f"  max |glasslab - TransformerLens| = {difference:.2e}")
    print(f"  attribution vs real patching, Pearson over cells: {compared.correlation:.3f}")


if __name__ == "__main__":
    main()
