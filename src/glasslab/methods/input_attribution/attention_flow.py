"""Attention-based attributions: rollout and flow (Abnar & Zuidema 2020), gradient-weighted attention.

All three read the model's real attention patterns (``blocks.{L}.attn.pattern``, one per query head,
so grouped-query models need nothing special) on the unedited prompt.

- Residual mixing (Abnar & Zuidema): each layer's head-averaged pattern ``A`` becomes
  ``0.5 * A + 0.5 * I``, the identity standing for the residual connection; rows still sum to 1.
- Rollout: the product of the mixed matrices from the first layer to the last; row ``last`` says how
  much of the last position's stream traces back to each input token (rows sum to 1).
- Flow: the same layers as a graph (node = layer x position, edge capacity = mixed attention weight)
  and, for each input token, the maximum flow from it to the last position's top node. Flow respects
  the bottlenecks that rollout multiplies through. Capacities are scaled to integers (1e6 per unit)
  for scipy's max-flow, so values carry an error of about 1e-6 per edge.
- Gradient-weighted attention (Chefer et al. 2021, "Generic attention-model explainability"): each
  layer's ``E = mean over heads of max(0, A * df/dA)``, propagated as ``R <- R + E @ R`` from ``R = I``;
  the score is row ``last`` of ``R - I`` (the identity's self-credit removed). Unlike rollout, it is
  specific to the target: heads whose pattern does not move ``f`` count for nothing.

These are unsigned and ignore what the MLPs and the values do, so they describe where information
can move, not what it does; the faithfulness scores show how far that matches the target here.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import csr_array
from scipy.sparse.csgraph import maximum_flow

from ...interventions.values import Replace
from .prepared import Prepared
from .result import MethodOutput

PATTERNS = "blocks.*.attn.pattern"
FLOW_SCALE = 1_000_000


def mixed_attention(patterns: list[torch.Tensor]) -> list[np.ndarray]:
    """Per layer, [n, n] float64: head-averaged pattern mixed half-and-half with the identity."""
    mixed = []
    for pattern in patterns:  # [head, n, n]
        average = pattern.double().mean(0).cpu().numpy()
        mixed.append(0.5 * average + 0.5 * np.eye(average.shape[0]))
    return mixed


def rollout_matrix(mixed: list[np.ndarray]) -> np.ndarray:
    """[n, n]: mixed_L @ ... @ mixed_1 (row i: how position i's final stream splits over input tokens)."""
    result = np.eye(mixed[0].shape[0])
    for layer in mixed:
        result = layer @ result
    return result


def flow_values(mixed: list[np.ndarray], sink: int, sources: list[int]) -> np.ndarray:
    """Max flow from input node (0, s) to top node (layers, sink) for each source, over the layer graph."""
    n, layers = mixed[0].shape[0], len(mixed)
    rows, cols, caps = [], [], []
    for layer, matrix in enumerate(mixed):
        query, key = np.nonzero(matrix > 0)
        rows.append(layer * n + key)
        cols.append((layer + 1) * n + query)
        caps.append(np.rint(matrix[query, key] * FLOW_SCALE))
    size = (layers + 1) * n
    graph = csr_array(
        (np.concatenate(caps).astype(np.int32), (np.concatenate(rows), np.concatenate(cols))), shape=(size, size)
    )
    top = layers * n + sink
    return np.array([maximum_flow(graph, s, top).flow_value / FLOW_SCALE for s in sources])


def _patterns(prep: Prepared) -> list[torch.Tensor]:
    run = prep.model.run(prep.ids, cache=[PATTERNS], logits=False)
    prep.forward_rows += 1
    return [run.cache[f"blocks.{layer}.attn.pattern"][0] for layer in range(prep.model.n_layers)]


def attention_rollout(prep: Prepared) -> MethodOutput:
    rollout = rollout_matrix(mixed_attention(_patterns(prep)))[-1]
    details = {"bos_share": float(rollout[0])} if prep.positions[0] == 1 else {}
    return MethodOutput(torch.tensor(rollout[prep.positions]), evaluations=1, details=details)


def attention_flow(prep: Prepared) -> MethodOutput:
    mixed = mixed_attention(_patterns(prep))
    flows = flow_values(mixed, mixed[0].shape[0] - 1, prep.positions)
    return MethodOutput(torch.tensor(flows), evaluations=1, details={"capacity_scale": FLOW_SCALE})


def attention_gradients(prep: Prepared) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer, the [head, n, n] pattern and the gradient of ``f`` with respect to it."""
    model = prep.model
    names = [f"blocks.{layer}.attn.pattern" for layer in range(model.n_layers)]
    # A copy puts the cached pattern itself on the path from the pattern to the output.
    with torch.enable_grad():
        run = model.run(
            prep.ids,
            cache=[PATTERNS, "ln_final"],
            logits=False,
            grad=True,
            interventions=[Replace(PATTERNS, fn=torch.clone)],
        )
        patterns = [run.cache[name] for name in names]
        grads = torch.autograd.grad(prep.target(model, run).sum(), patterns)
    prep.forward_rows += 1
    return [p[0].detach() for p in patterns], [g[0] for g in grads]


def gradient_attention(prep: Prepared) -> MethodOutput:
    patterns, grads = attention_gradients(prep)
    n = patterns[0].shape[-1]
    relevance = torch.eye(n, dtype=torch.float64)
    for pattern, grad in zip(patterns, grads, strict=True):
        weighted = (pattern.double() * grad.double()).clamp_min(0).mean(0)
        relevance = relevance + weighted @ relevance
    scores = (relevance - torch.eye(n, dtype=torch.float64))[-1, prep.positions]
    return MethodOutput(scores, evaluations=1)
