"""Head composition (Elhage et al. 2021): how strongly an earlier head's output feeds a later head's
queries (Q), keys (K) or values (V), read from the weights alone.

Row-vector convention (``x @ W``). Head ``h`` reads the residual ``x`` with ``W_Q, W_K, W_V``
[d_model, d_head] and writes ``z @ W_O`` [d_head, d_model]; ``W_OV = W_V W_O`` and ``W_QK = W_Q W_K^T``
are [d_model, d_model]. For a writer head ``A`` in layer ``l`` and a reader head ``B`` in a later layer:

- Q-composition: ``||W_OV^A W_QK^B||_F / (||W_OV^A||_F ||W_QK^B||_F)`` (A's output in B's queries),
- K-composition: the same with ``W_QK^B`` transposed (A's output in B's keys),
- V-composition: the same with ``W_OV^B`` (A's output in B's values).

Scores lie in [0, 1]; the numerator is computed exactly as ``<(W_OV^A)^T W_OV^A, M M^T>`` with the Gram
matrices built from the low-rank factors, so no [d_model, d_model] product per pair is formed.

Grouped-query attention: query head ``h`` uses key/value head ``h // (n_heads / n_kv_heads)``; its
``W_K``/``W_V`` are that shared head's.

What is folded in, and what is not:

- the reader's input norm weight (LayerNorm/RMSNorm, Gemma's ``1 + w``) is folded into its ``W_Q``,
  ``W_K``, ``W_V``: ``diag(w) W``; a LayerNorm's mean subtraction is folded too, ``P diag(w) W`` with
  ``P = I - 11^T/d``. LayerNorm families also centre every writer's output (``W_O P``), since every
  reader (and the unembedding) removes the mean anyway; this is TransformerLens's ``fold_ln`` plus
  ``center_writing_weights``.
- post-norm families (Gemma 2/3): the post-attention norm's weight is folded into the writer's
  ``W_O``; per-head query/key norms (Gemma 3, Qwen 3) fold their weights into ``W_Q``/``W_K``.
- every norm's scale ``rsqrt(mean(x^2) + eps)`` is a positive number per token, and the scores are
  invariant to scaling either matrix, so leaving it out is exact. Gemma's query pre-attention scalar
  is also a number and drops out.
- not represented: biases (affine terms, not part of the bilinear maps), rotary position embeddings
  (``W_QK`` is the content-only form at relative distance 0; with rotary the real map depends on
  the distance between query and key), attention logit soft-capping (Gemma 2), and the MLPs in between
  (composition scores are direct paths only).

Baselines: the same scores for Gaussian random matrices of the same shapes (``n_random`` draws per mode,
computed in the head dimension by ``factored_score``), and the model's own distribution: each pair's
rank among all pairs of the mode and its robust z, ``(score - median) / (1.4826 MAD)``. Trained weights
are far from isotropic, so their scores can sit systematically above or below the Gaussian ones (in Gemma 3
270M most pairs score below them); a pair that matters stands out from the model's own pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import InputError
from ...model.model import Model
from .composition_result import MODE_NAMES, MODES, Composition, CompositionPair

__all__ = [
    "MODES",
    "MODE_NAMES",
    "Composition",
    "CompositionPair",
    "HeadWeights",
    "composition_score",
    "factored_score",
    "head_composition",
    "head_weights",
    "input_norm",
    "random_baseline",
]
_MEMORY_LIMIT = 4 * 2**30  # bytes of float64 writer Gram matrices held at once


@dataclass(frozen=True)
class HeadWeights:
    """One layer's attention weights per head, row-vector convention, float64.

    q: [head, d_model, d_head]; k, v: [kv_head, d_model, d_head]; o: [head, d_head, d_model].
    Biases (None when absent) are [head or kv_head, d_head]; unfolded weights only.
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    o: torch.Tensor
    q_bias: torch.Tensor | None = None
    k_bias: torch.Tensor | None = None
    v_bias: torch.Tensor | None = None


def input_norm(model: Model, layer: int) -> torch.nn.Module:
    """The norm a layer's attention reads the residual stream through."""
    return model.block_module(layer, model.arch.attn_norm)


def head_weights(model: Model, layer: int, *, fold: bool = False) -> HeadWeights:
    """Per-head ``W_Q, W_K, W_V, W_O`` of ``layer``; ``fold=True`` folds the norms as the module doc says."""
    weights = model.weights

    def read(name: str) -> torch.Tensor:
        return weights.read(name, layer).detach().double()

    def optional(name: str) -> torch.Tensor | None:
        bias = weights.get(name, layer)
        return None if bias is None else bias.detach().double()

    q, k, v, o = read("W_Q"), read("W_K"), read("W_V"), read("W_O")
    if not fold:
        return HeadWeights(q, k, v, o, optional("b_Q"), optional("b_K"), optional("b_V"))

    params = weights.attn_norm(layer)
    reader = torch.diag(params.weight.double())
    if params.centre:
        reader = _centring(model.d_model) @ reader
    q, k, v = reader @ q, reader @ k, reader @ v
    if model.arch.q_norm:
        q = q * weights.q_norm(layer).weight.double()
    if model.arch.k_norm:
        k = k * weights.k_norm(layer).weight.double()
    if model.arch.post_attn_norm:
        o = o * weights.post_attn_norm(layer).weight.double()
    if params.centre:
        o = o @ _centring(model.d_model)
    return HeadWeights(q, k, v, o)


def _centring(d: int) -> torch.Tensor:
    return torch.eye(d, dtype=torch.float64) - 1.0 / d


def _per_query_head(w: HeadWeights, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v, o indexed by query head (key/value heads repeated over their group)."""
    kv = torch.arange(w.q.shape[0]) // group
    return w.q, w.k[kv], w.v[kv], w.o


def _writer_grams(w: HeadWeights, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([heads, d*d] flattened ``W_OV^T W_OV``, [heads] its trace = ``||W_OV||_F^2``)."""
    _, _, v, o = _per_query_head(w, group)
    gram = o.transpose(1, 2) @ (v.transpose(1, 2) @ v) @ o  # O^T V^T V O
    return gram.flatten(1), gram.diagonal(dim1=1, dim2=2).sum(-1)


def _reader_grams(w: HeadWeights, group: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """([heads, d*d] flattened ``M M^T``, [heads] its trace) for M = W_QK (q), W_QK^T (k) or W_OV (v)."""
    q, k, v, o = _per_query_head(w, group)
    if mode == "q":
        gram = q @ (k.transpose(1, 2) @ k) @ q.transpose(1, 2)  # Q K^T K Q^T
    elif mode == "k":
        gram = k @ (q.transpose(1, 2) @ q) @ k.transpose(1, 2)  # K Q^T Q K^T
    else:
        gram = v @ (o @ o.transpose(1, 2)) @ v.transpose(1, 2)  # V O O^T V^T
    return gram.flatten(1), gram.diagonal(dim1=1, dim2=2).sum(-1)


def _scores(writer: tuple[torch.Tensor, torch.Tensor], reader: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """[writer heads, reader heads]: ``sqrt(<A^T A, M M^T>) / (||A|| ||M||)`` from the Gram matrices."""
    numerator2 = (writer[0] @ reader[0].T).clamp_min(0.0)
    return numerator2.sqrt() / torch.outer(writer[1], reader[1]).sqrt().clamp_min(1e-300)


def factored_score(v1: torch.Tensor, o1: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """The score of ``A = v1 o1`` and ``B = left right^T`` in the head dimension only (no d_model x d_model
    matrix): ``||A B||^2 = tr(M^T G_v M G_right)`` with ``M = o1 left``; used for the random baseline."""
    m = o1 @ left
    g_v, g_right = v1.T @ v1, right.T @ right
    numerator2 = (m * (g_v @ m @ g_right)).sum()
    a2 = (g_v * (o1 @ o1.T)).sum()
    b2 = ((left.T @ left) * g_right).sum()
    return numerator2.clamp_min(0.0).sqrt() / (a2 * b2).sqrt()


def random_baseline(d_model: int, d_head: int, n: int, seed: int) -> dict[str, tuple[float, float, float]]:
    """Per mode (mean, std, max) of the scores of Gaussian random weights with these shapes."""
    if n < 2:
        raise InputError(f"n_random must be at least 2, got {n}")
    generator = torch.Generator().manual_seed(seed)

    def g(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    out = {}
    for mode in MODES:
        values = []
        for _ in range(n):
            v1, o1 = g(d_model, d_head), g(d_head, d_model)
            q2, k2, v2, o2 = g(d_model, d_head), g(d_model, d_head), g(d_model, d_head), g(d_head, d_model)
            left, right = {"q": (q2, k2), "k": (k2, q2), "v": (v2, o2.T)}[mode]
            values.append(float(factored_score(v1, o1, left, right)))
        t = torch.tensor(values)
        out[mode] = (float(t.mean()), float(t.std()), float(t.max()))
    return out


def composition_score(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||A B||_F / (||A||_F ||B||_F)`` for explicit matrices (the direct formula)."""
    return torch.linalg.matrix_norm(a @ b) / (torch.linalg.matrix_norm(a) * torch.linalg.matrix_norm(b))


def head_composition(
    model: Model,
    *,
    top: int = 10,
    n_random: int = 32,
    seed: int = 0,
    roles=None,
    role_threshold: float = 0.3,
) -> Composition:
    """Q-, K- and V-composition scores between every pair of heads in different layers (module doc).

    ``roles``: a ``HeadRoles`` result (``methods.observe.head_roles``); heads scoring at least
    ``role_threshold`` in a role are labelled with it, and the K-composition pairs from previous-token
    heads into induction heads are listed.
    """
    if not 1 <= top <= 1000:
        raise InputError(f"top must be in 1..1000, got {top}")
    if model.n_layers < 2:
        raise InputError("composition needs at least two layers")
    L, H, d = model.n_layers, model.n_heads, model.d_model
    if L * H * d * d * 8 > _MEMORY_LIMIT:
        raise InputError(f"{model.name} is too large for exact composition scores here (d_model {d}, {L * H} heads)")
    group = H // model.n_kv_heads
    weights = [head_weights(model, layer, fold=True) for layer in range(L)]
    writer_grams = [_writer_grams(w, group) for w in weights]
    writers = (torch.cat([g for g, _ in writer_grams]), torch.cat([n for _, n in writer_grams]))
    del writer_grams
    scores = {mode: torch.full((L, H, L, H), float("nan"), dtype=torch.float64) for mode in MODES}
    for reader_layer in range(1, L):
        earlier = (writers[0][: reader_layer * H], writers[1][: reader_layer * H])
        for mode in MODES:
            values = _scores(earlier, _reader_grams(weights[reader_layer], group, mode))  # [reader_layer * H, H]
            scores[mode][:reader_layer, :, reader_layer, :] = values.reshape(reader_layer, H, H)
    baseline = random_baseline(d, model.d_head, n_random, seed)
    head_roles = _roles(roles, role_threshold, L, H)
    defined = {mode: scores[mode][~torch.isnan(scores[mode])] for mode in MODES}
    spread = {}
    for mode, values in defined.items():
        median = float(values.median())
        spread[mode] = (median, float((values - median).abs().median()), int(values.numel()))

    def pair(mode: str, index: int) -> CompositionPair:
        wl, wh, rl, rh = (int(i) for i in torch.unravel_index(torch.tensor(index), (L, H, L, H)))
        value = float(scores[mode][wl, wh, rl, rh])
        mean, std, _ = baseline[mode]
        median, mad, _ = spread[mode]
        return CompositionPair(
            mode,
            (wl, wh),
            (rl, rh),
            value,
            (value - mean) / max(std, 1e-12),
            int((defined[mode] > value).sum()) + 1,
            (value - median) / max(1.4826 * mad, 1e-12),
            head_roles.get((wl, wh), []),
            head_roles.get((rl, rh), []),
        )

    best = {}
    for mode in MODES:
        flat = torch.nan_to_num(scores[mode].flatten(), nan=-1.0)
        best[mode] = [pair(mode, int(i)) for i in flat.topk(min(top, int((flat >= 0).sum()))).indices]
    role_pairs = []
    if head_roles:
        prev = [h for h, r in head_roles.items() if "previous_token" in r]
        induction = [h for h, r in head_roles.items() if "induction" in r]
        candidates = [(w, r) for w in prev for r in induction if w[0] < r[0]]
        role_pairs = sorted(
            (
                pair("k", int(torch.tensor([w[0], w[1], r[0], r[1]]) @ torch.tensor([H * L * H, L * H, H, 1])))
                for w, r in candidates
            ),
            key=lambda p: -p.score,
        )
    return Composition(model.name, L, H, scores, baseline, n_random, spread, best, head_roles, role_pairs)


def _roles(roles, threshold: float, n_layers: int, n_heads: int) -> dict[tuple[int, int], list[str]]:
    if roles is None:
        return {}
    table = getattr(roles, "scores", None)
    if not isinstance(table, dict):
        raise InputError("roles= must be a HeadRoles result (glasslab.head_roles)")
    out: dict[tuple[int, int], list[str]] = {}
    for role in ("previous_token", "induction", "duplicate_token"):
        values = table.get(role)
        if values is None:
            continue
        if tuple(values.shape) != (n_layers, n_heads):
            raise InputError("the head roles are of another model (their shape differs); compute them on this one")
        for layer, head in (values >= threshold).nonzero().tolist():
            out.setdefault((layer, head), []).append(role)
    return out
