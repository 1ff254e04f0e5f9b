"""Two prompts, one model: run an observation method on both and show where they differ.

Methods and what is compared (``b - a`` unless a distance is stated):

- ``predict``: KL(A || B) between the next-token distributions at every aligned position pair, and at
  the compared positions the probability of every token in either side's top ``k``.
- ``attention``: per head, the total-variation distance between the two attention rows of each
  aligned query pair (keys mapped through the alignment; weight on keys without a partner counts in
  full), averaged over aligned queries after the first; plus the change of each head summary
  (row max, entropy, distance, first-token weight) from ``methods.observe.attention``.
- ``logit_lens``: per layer (embeddings first) and aligned position, KL(A || B) between the two logit
  lens distributions; with ``target``, the change of its lens probability.
- ``dla``: direct logit attribution of ``target`` (minus ``versus``) at the compared positions: the
  change of each layer's attention and MLP share and of each head's share.
- ``neurons``: every MLP neuron's activation at the compared positions; per layer the size of the
  change ``||B - A||``, and the neurons that changed most.
- ``sae``: every feature of an SAE (``sae=...``) at the compared positions: the features whose
  activation changed most, and per position pair the number of features active on either side.

Compared positions: ``position`` counts from each prompt's own end when negative (``-1``: each
prompt's last token, where the next-token prediction is read), and is a position of prompt A mapped to
its partner in B through the alignment when non-negative (an error if it has none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ...dictionaries.fit import check_fits
from ...errors import InputError
from ...model.model import Model
from ...views.explanations import explanation
from ...views.figures import Figure
from ...views.result import Result
from ..attribute.dla import logit_attribution
from ..metrics import kl_divergence
from ..observe.predict import predict
from .alignment import Alignment, align
from .prompts_aligned import attention_distance, attention_fields, logit_lens_fields, pair_labels
from .result import Change, Grid, changes_bars, top_changes

__all__ = ["METHODS", "PromptComparison", "attention_distance", "compare_prompts"]

METHODS: tuple[str, ...] = ("predict", "attention", "logit_lens", "dla", "neurons", "sae")


@dataclass(frozen=True)
class PromptComparison(Result):
    """One method run on two prompts, as grids of differences and a ranked list of the largest changes."""

    kind = "compare_prompts"

    model: str
    method: str
    prompt_a: str
    prompt_b: str
    alignment: Alignment
    positions: tuple[int, int] | None  # the compared positions (A, B) for single-position methods
    grids: list[Grid]
    changes: list[Change]  # largest first
    facts: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # JSON of each side's own result, where there is one

    def figure(self) -> Figure:
        panels = [g.heatmap() for g in self.grids]
        if self.changes:
            panels.append(changes_bars("largest changes from A to B", self.changes, "B - A (or distance)"))
        extra = {"A": self.prompt_a, "B": self.prompt_b, "alignment": self.alignment.rule} | self.facts
        if self.positions:
            a, b = self.positions
            extra["compared"] = f"A {a} {self.alignment.tokens_a[a]!r} with B {b} {self.alignment.tokens_b[b]!r}"
        return Figure(
            f"{self.model}: {self.method} on two prompts",
            panels,
            **explanation("compare_prompts", method=self.method, rule=self.alignment.rule),
            extra=extra,
        )


def compare_prompts(
    model: Model,
    prompt_a: str,
    prompt_b: str,
    *,
    method: str = "predict",
    align_rule: str = "auto",
    position: int = -1,
    target: str | int | None = None,
    versus: str | int | None = None,
    k: int = 10,
    sae: Any = None,
) -> PromptComparison:
    """Run ``method`` on both prompts and return their differences (see the module doc).

    ``align_rule``: how positions pair up when the prompts differ (``alignment.py``). ``target`` (and
    ``versus``) are needed by ``dla`` and optional for ``predict``/``logit_lens``; ``k`` bounds the
    ranked changes (and the top tokens of ``predict``); ``sae`` is the SAE for ``method="sae"``.
    """
    if method not in METHODS:
        raise InputError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    if not 1 <= k <= 1000:
        raise InputError(f"k must be in 1..1000, got {k}")
    alignment = align(model, prompt_a, prompt_b, align_rule)
    if not alignment.pairs:
        raise InputError(f"the '{alignment.rule}' alignment pairs no position of the prompts; try 'right' or 'left'")
    positions = _compared_positions(alignment, position)
    base = dict(model=model.name, method=method, prompt_a=prompt_a, prompt_b=prompt_b, alignment=alignment)
    if method == "predict":
        fields = _predict(model, prompt_a, prompt_b, alignment, positions, target, k)
    elif method == "attention":
        fields = attention_fields(model, prompt_a, prompt_b, alignment, k)
        positions = None
    elif method == "logit_lens":
        fields = logit_lens_fields(model, prompt_a, prompt_b, alignment, target, k)
        positions = None
    elif method == "dla":
        fields = _dla(model, prompt_a, prompt_b, positions, target, versus, k)
    elif method == "neurons":
        fields = _neurons(model, prompt_a, prompt_b, positions, k)
    else:
        fields = _sae_features(model, prompt_a, prompt_b, alignment, positions, sae, k)
    return PromptComparison(**base, positions=positions, **fields)


def _compared_positions(alignment: Alignment, position: int) -> tuple[int, int]:
    n_a, n_b = len(alignment.tokens_a), len(alignment.tokens_b)
    if position < 0:
        if position < -min(n_a, n_b):
            raise InputError(f"position {position} is out of range for prompts of {n_a} and {n_b} tokens")
        return n_a + position, n_b + position
    if position >= n_a:
        raise InputError(f"position {position} is out of range for prompt A ({n_a} tokens)")
    partner = alignment.partner_of_a(position)
    if partner is None:
        raise InputError(
            f"position {position} of prompt A has no partner in B under the '{alignment.rule}' alignment; "
            "pick another position or alignment"
        )
    return position, partner


# ---------------------------------------------------------------------------------------------------
# Methods


def _predict(model, prompt_a, prompt_b, alignment, positions, target, k) -> dict:
    run_a, run_b = model.run(prompt_a), model.run(prompt_b)
    ia = torch.tensor([i for i, _ in alignment.pairs])
    jb = torch.tensor([j for _, j in alignment.pairs])
    log_a = torch.log_softmax(run_a.logits[0, ia].float(), dim=-1)
    log_b = torch.log_softmax(run_b.logits[0, jb].float(), dim=-1)
    kl = kl_divergence(log_a, log_b).tolist()
    pa, pb = positions
    pred_a = predict(model, prompt_a, k=k, position=pa, target=target, run=run_a)
    pred_b = predict(model, prompt_b, k=k, position=pb, target=target, run=run_b)
    last_a = torch.log_softmax(run_a.logits[0, pa].float(), dim=-1)
    last_b = torch.log_softmax(run_b.logits[0, pb].float(), dim=-1)
    probs_a, probs_b = last_a.exp(), last_b.exp()
    ids = list(dict.fromkeys([s.token_id for s in pred_a.top] + [s.token_id for s in pred_b.top]))
    if pred_a.target is not None:
        ids.append(pred_a.target.token_id)
    changes = [
        Change(
            f"{model.tokenizer.decode([t])!r} #{t}",
            float(probs_a[t]),
            float(probs_b[t]),
            float(probs_b[t]) - float(probs_a[t]),
        )
        for t in dict.fromkeys(ids)
    ]
    at_compared = float(kl_divergence(last_a[None], last_b[None])[0])
    grid = Grid(
        "KL(A || B) of the next-token distributions at each aligned position",
        ["next-token KL"],
        pair_labels(alignment),
        [kl],
        row_title="",
        col_title="aligned position",
        value_label="nats",
    )
    facts = {
        "KL at the compared positions": f"{at_compared:.4f} nats",
        "top token": f"A {pred_a.top[0].token!r} -> B {pred_b.top[0].token!r}",
    }
    if pred_a.target is not None:
        facts["target probability"] = f"A {pred_a.target.probability:.4f} -> B {pred_b.target.probability:.4f}"
    return {
        "grids": [grid],
        "changes": top_changes(changes, k),
        "facts": facts,
        "details": {"a": pred_a.to_dict(), "b": pred_b.to_dict(), "kl_at_positions": at_compared},
    }


def _dla(model, prompt_a, prompt_b, positions, target, versus, k) -> dict:
    if target is None:
        raise InputError("the dla comparison needs a target token, e.g. target=' Paris'")
    pa, pb = positions
    dla_a = logit_attribution(model, prompt_a, target=target, versus=versus, position=pa, top_neurons=0)
    dla_b = logit_attribution(model, prompt_b, target=target, versus=versus, position=pb, top_neurons=0)
    rows = [f"L{layer}" for layer in range(model.n_layers)]
    blocks_a = [[a, m] for a, m in zip(dla_a.attn, dla_a.mlp, strict=True)]
    blocks_b = [[a, m] for a, m in zip(dla_b.attn, dla_b.mlp, strict=True)]
    grids = [
        Grid(
            f"change of each block's direct share of {dla_a.metric}",
            rows,
            ["attn", "mlp"],
            _minus(blocks_b, blocks_a),
            blocks_a,
            blocks_b,
            "layer",
            "block",
            "logit units, B - A",
        ),
        Grid(
            f"change of each head's direct share of {dla_a.metric}",
            rows,
            [f"H{h}" for h in range(model.n_heads)],
            _minus(dla_b.heads, dla_a.heads),
            dla_a.heads,
            dla_b.heads,
            "layer",
            "head",
            "logit units, B - A",
        ),
    ]
    changes = [Change("embed", dla_a.embed, dla_b.embed, dla_b.embed - dla_a.embed)]
    for layer in range(model.n_layers):
        for name, a, b in (("attn", dla_a.attn, dla_b.attn), ("mlp", dla_a.mlp, dla_b.mlp)):
            changes.append(Change(f"L{layer} {name}", a[layer], b[layer], b[layer] - a[layer]))
        for h in range(model.n_heads):
            a, b = dla_a.heads[layer][h], dla_b.heads[layer][h]
            changes.append(Change(f"L{layer}H{h}", a, b, b - a))
    facts = {dla_a.metric: f"A {dla_a.logit:.4f} -> B {dla_b.logit:.4f}"}
    return {
        "grids": grids,
        "changes": top_changes(changes, k),
        "facts": facts,
        "details": {"a": dla_a.to_dict(), "b": dla_b.to_dict()},
    }


def _neurons(model, prompt_a, prompt_b, positions, k) -> dict:
    pa, pb = positions
    run_a = model.run(prompt_a, cache="blocks.*.mlp.post", logits=False)
    run_b = model.run(prompt_b, cache="blocks.*.mlp.post", logits=False)
    act_a = torch.stack([run_a.cache[f"blocks.{lay}.mlp.post"][0, pa].float() for lay in range(model.n_layers)])
    act_b = torch.stack([run_b.cache[f"blocks.{lay}.mlp.post"][0, pb].float() for lay in range(model.n_layers)])
    diff = act_b - act_a
    rows = [f"L{layer}" for layer in range(model.n_layers)]
    grid = Grid(
        "size of the change of each layer's neuron activations, ||B - A||",
        rows,
        ["all neurons"],
        [[float(v)] for v in diff.norm(dim=-1)],
        None,
        None,
        "layer",
        "",
        "L2 norm",
    )
    best = diff.abs().flatten().topk(min(k, diff.numel())).indices.tolist()
    changes = []
    for index in best:
        layer, n = divmod(index, model.d_mlp)
        changes.append(Change(f"L{layer} N{n}", float(act_a[layer, n]), float(act_b[layer, n]), float(diff[layer, n])))
    return {"grids": [grid], "changes": changes, "facts": {}, "details": {}}


def _sae_features(model, prompt_a, prompt_b, alignment, positions, sae, k) -> dict:
    if sae is None:
        raise InputError("the sae comparison needs an SAE: pass sae=<a loaded glasslab SAE>")
    if not hasattr(sae, "encode") or not isinstance(getattr(sae, "hook", None), str):
        raise InputError("sae= must be a glasslab SAE (glasslab.sae.SAE)")
    check_fits(sae, model)
    hook = sae.hook
    stop = model.hook_spec(hook).layer
    stop = None if stop is None else stop + 1
    run_a = model.run(prompt_a, cache=[hook], logits=False, stop_at_layer=stop)
    run_b = model.run(prompt_b, cache=[hook], logits=False, stop_at_layer=stop)
    with torch.inference_mode():
        feats_a = sae.encode(sae.read(run_a.cache[hook]))[0].float()  # [pos, features]
        feats_b = sae.encode(sae.read(run_b.cache[hook]))[0].float()
    pa, pb = positions
    diff = feats_b[pb] - feats_a[pa]
    best = diff.abs().topk(min(k, diff.numel())).indices.tolist()
    changes = [Change(f"feature {f}", float(feats_a[pa, f]), float(feats_b[pb, f]), float(diff[f])) for f in best]
    ia = [i for i, _ in alignment.pairs]
    jb = [j for _, j in alignment.pairs]
    active_a = (feats_a[ia] > 0).sum(-1).float()
    active_b = (feats_b[jb] > 0).sum(-1).float()
    overlap = ((feats_a[ia] > 0) & (feats_b[jb] > 0)).sum(-1).float()
    union = ((feats_a[ia] > 0) | (feats_b[jb] > 0)).sum(-1).float().clamp_min(1)
    cols = pair_labels(alignment)
    grids = [
        Grid(
            f"active features at {hook} per aligned position",
            ["active features"],
            cols,
            [(active_b - active_a).tolist()],
            [active_a.tolist()],
            [active_b.tolist()],
            "",
            "aligned position",
            "count, B - A",
        ),
        Grid(
            "share of the active features the two sides do not share (1 - Jaccard)",
            ["1 - Jaccard"],
            cols,
            [(1 - overlap / union).tolist()],
            None,
            None,
            "",
            "aligned position",
            "0 = same features",
        ),
    ]
    return {"grids": grids, "changes": changes, "facts": {"SAE hook": hook}, "details": {}}


def _minus(b: list[list[float]], a: list[list[float]]) -> list[list[float]]:
    return [[y - x for x, y in zip(ra, rb, strict=True)] for ra, rb in zip(a, b, strict=True)]
