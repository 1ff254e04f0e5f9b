"""The prompt comparisons read at every aligned position pair, layer by layer or head by head: attention and
the logit lens (see ``prompts``' module doc for what each compares). Each returns ``PromptComparison`` fields."""

from __future__ import annotations

import torch

from ...errors import InputError
from ..lenses.logit_lens import CHUNK, EMBED_LAYER, layer_label, lens_hook
from ..metrics import kl_divergence
from ..observe.attention import all_patterns, summarise
from .alignment import Alignment
from .result import Change, Grid, top_changes


def pair_labels(alignment: Alignment) -> list[str]:
    """A column label per aligned position pair (both tokens where they differ)."""
    return [alignment.label(p) for p in alignment.pairs]


def attention_distance(patterns_a: torch.Tensor, patterns_b: torch.Tensor, alignment: Alignment) -> torch.Tensor:
    """[layer, head]: mean over aligned query pairs (not both at position 0) of the total-variation
    distance between the rows, keys mapped through the alignment (unpaired keys' weight counts in full)."""
    pairs = alignment.pairs
    ia = torch.tensor([i for i, _ in pairs])
    jb = torch.tensor([j for _, j in pairs])
    queries = [(i, j) for i, j in pairs if i > 0 or j > 0]
    if not queries:
        raise InputError("the prompts have a single aligned position; attention needs at least two")
    qa = torch.tensor([i for i, _ in queries])
    qb = torch.tensor([j for _, j in queries])
    rows_a = patterns_a[:, :, qa][..., ia]  # [layer, head, query, paired key]
    rows_b = patterns_b[:, :, qb][..., jb]
    paired = (rows_a - rows_b).abs().sum(-1)
    unpaired = (1 - rows_a.sum(-1)).clamp_min(0) + (1 - rows_b.sum(-1)).clamp_min(0)
    return (0.5 * (paired + unpaired)).mean(-1)


def attention_fields(model, prompt_a, prompt_b, alignment, k) -> dict:
    """The ``attention`` comparison (module doc of ``prompts``): each head's distance, and its summaries' changes."""
    _, pat_a = all_patterns(model, prompt_a)
    _, pat_b = all_patterns(model, prompt_b)
    distance = attention_distance(pat_a, pat_b, alignment)
    rows = [f"L{layer}" for layer in range(model.n_layers)]
    cols = [f"H{h}" for h in range(model.n_heads)]
    grids = [
        Grid(
            "how differently each head attends (total-variation distance, 0 = same, 1 = disjoint)",
            rows,
            cols,
            distance.tolist(),
            row_title="layer",
            col_title="head",
            value_label="mean TV distance",
        )
    ]
    sa, sb = summarise(pat_a), summarise(pat_b)
    for name, title in (
        ("row_max", "change of focus (mean row max)"),
        ("first_token", "change of the weight on the first token"),
        ("distance", "change of the mean distance looked back (tokens)"),
        ("entropy", "change of the attention entropy (nats)"),
    ):
        grids.append(
            Grid(
                title,
                rows,
                cols,
                (sb[name] - sa[name]).tolist(),
                sa[name].tolist(),
                sb[name].tolist(),
                "layer",
                "head",
                "B - A",
            )
        )
    changes = [
        Change(f"L{layer}H{h}", None, None, float(distance[layer, h]))
        for layer in range(model.n_layers)
        for h in range(model.n_heads)
    ]
    return {"grids": grids, "changes": top_changes(changes, k), "facts": {}, "details": {}}


def logit_lens_fields(model, prompt_a, prompt_b, alignment, target, k) -> dict:
    """The ``logit_lens`` comparison (module doc of ``prompts``): per layer and aligned position, the lens KL."""
    hooks = [lens_hook(EMBED_LAYER), "blocks.*.resid_post"]
    run_a = model.run(prompt_a, cache=hooks, logits=False)
    run_b = model.run(prompt_b, cache=hooks, logits=False)
    target_id = None if target is None else model.token_id(target, "target")
    ia = [i for i, _ in alignment.pairs]
    jb = [j for _, j in alignment.pairs]
    layers = [EMBED_LAYER, *range(model.n_layers)]
    resid_a = torch.cat([run_a.cache[lens_hook(layer)][0, ia] for layer in layers])
    resid_b = torch.cat([run_b.cache[lens_hook(layer)][0, jb] for layer in layers])
    kl, top_a, top_b, prob_a, prob_b = [], [], [], [], []
    with torch.inference_mode():
        for start in range(0, resid_a.shape[0], CHUNK):
            log_a = torch.log_softmax(model.unembed(resid_a[start : start + CHUNK]).float(), dim=-1)
            log_b = torch.log_softmax(model.unembed(resid_b[start : start + CHUNK]).float(), dim=-1)
            kl += kl_divergence(log_a, log_b).tolist()
            top_a += log_a.argmax(-1).tolist()
            top_b += log_b.argmax(-1).tolist()
            if target_id is not None:
                prob_a += log_a[:, target_id].exp().tolist()
                prob_b += log_b[:, target_id].exp().tolist()
    n = len(ia)

    def grid_of(values: list) -> list[list]:
        return [values[r * n : (r + 1) * n] for r in range(len(layers))]

    rows, cols = [layer_label(layer) for layer in layers], pair_labels(alignment)
    grids = [
        Grid(
            "KL(A || B) of the logit-lens distributions",
            rows,
            cols,
            grid_of(kl),
            None,
            None,
            "layer",
            "aligned position",
            "nats",
        )
    ]
    decode = model.tokenizer.decode
    if target_id is not None:
        diff = [b - a for a, b in zip(prob_a, prob_b, strict=True)]
        grids.append(
            Grid(
                f"change of the lens probability of {decode([target_id])!r}",
                rows,
                cols,
                grid_of(diff),
                grid_of(prob_a),
                grid_of(prob_b),
                "layer",
                "aligned position",
                "B - A",
            )
        )
        cells = [(r, c, prob_a[r * n + c], prob_b[r * n + c]) for r in range(len(layers)) for c in range(n)]
        changes = [Change(f"{rows[r]} @ {cols[c]}", a, b, b - a) for r, c, a, b in cells]
    else:
        changes = [
            Change(
                f"{rows[r]} @ {cols[c]}: {decode([top_a[r * n + c]])!r} -> {decode([top_b[r * n + c]])!r}",
                None,
                None,
                kl[r * n + c],
            )
            for r in range(len(layers))
            for c in range(n)
        ]
    differing = sum(1 for a, b in zip(top_a, top_b, strict=True) if a != b)
    facts = {"cells whose top token differs": f"{differing} of {len(top_a)}"}
    details = {
        "top_a": [[decode([t]) for t in row] for row in grid_of(top_a)],
        "top_b": [[decode([t]) for t in row] for row in grid_of(top_b)],
    }
    return {"grids": grids, "changes": top_changes(changes, k), "facts": facts, "details": details}
