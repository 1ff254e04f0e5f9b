"""Logit lens (nostalgebraist 2020): read each layer's residual stream as if it were the last.

Every layer's residual stream (``blocks.{L}.resid_post``) goes through the model's own final norm,
unembedding and any final soft-capping (``model.unembed``), giving a next-token distribution per layer
and position. The first row, layer ``-1``, decodes ``blocks.0.resid_pre``: the embeddings (plus GPT-2's
position embeddings), i.e. what the model knows before any block has run. The last layer's row is the
model's own output exactly.

With ``lens=`` a tuned lens (``methods.lenses.tuned_lens``), each residual is first passed through that layer's
learned affine translator; everything else is the same.

Memory: only top-k, target and candidate statistics are kept; the [positions, vocab] logits of one layer
exist at a time, in chunks of positions, so 262144-token vocabularies are fine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ...errors import InputError
from ...model.model import Model
from ...model.run import Run
from ...views.explanations import explanation, note
from ...views.figures import Figure, Heatmap
from ...views.result import Result
from ..metrics import kl_divergence

if TYPE_CHECKING:
    from .tuned_lens import TunedLens

EMBED_LAYER = -1  # the row that decodes blocks.0.resid_pre
CHUNK = 256  # positions unembedded at once: bounds memory at [chunk, vocab]


def lens_hook(layer: int) -> str:
    """The residual-stream hook a lens row decodes: ``blocks.0.resid_pre`` for -1, else ``resid_post``."""
    return "blocks.0.resid_pre" if layer == EMBED_LAYER else f"blocks.{layer}.resid_post"


def layer_label(layer: int) -> str:
    return "embed" if layer == EMBED_LAYER else f"layer {layer}"


@dataclass(frozen=True)
class LensToken:
    token: str
    token_id: int
    probability: float


@dataclass(frozen=True)
class LogitLens(Result):
    kind = "logit_lens"
    json_keys = (
        "model",
        "prompt",
        "lens",
        "lens_note",
        "tokens",
        "positions",
        "target",
        "candidate_position",
        "candidates",
        "layers",
    )

    model: str
    prompt: str
    lens: str  # "logit lens" or "tuned lens"
    lens_note: str  # how the lens was made (the tuned lens's objective), "" for the logit lens
    tokens: list[str]  # every token of the prompt
    positions: list[int]  # the absolute positions decoded
    layers: list[int]  # -1 = embeddings (blocks.0.resid_pre), then 0..n_layers-1 (resid_post)
    top: list[list[list[LensToken]]]  # [layer][position][k]
    kl_to_output: list[list[float]]  # [layer][position]: KL(model output || lens), nats
    target: LensToken | None  # the target token (its probability here is the model's output)
    target_probability: list[list[float]] | None  # [layer][position]
    target_rank: list[list[int]] | None  # [layer][position], 1 = top
    candidate_position: int
    candidates: list[LensToken]  # probability = the model's output at candidate_position
    candidate_probability: list[list[float]]  # [layer][candidate] at candidate_position

    def figure(self) -> Figure:
        order = list(reversed(range(len(self.layers))))  # the output on top, the embeddings at the bottom
        row_labels = [layer_label(self.layers[i]) for i in order]
        col_labels = [f"{p} {self.tokens[p]!r}" for p in self.positions]
        colour = self.target_probability if self.target_probability is not None else None
        values = [
            [colour[i][j] if colour is not None else self.top[i][j][0].probability for j in range(len(self.positions))]
            for i in order
        ]
        hover = []
        for i in order:
            hover_row = []
            for j, position in enumerate(self.positions):
                tops = ", ".join(f"{t.token!r} {t.probability:.3f}" for t in self.top[i][j])
                text = f"{layer_label(self.layers[i])}, after {self.tokens[position]!r}: {tops}"
                text += f"; KL to output {self.kl_to_output[i][j]:.3f} nats"
                if self.target is not None and self.target_probability is not None and self.target_rank is not None:
                    text += (
                        f"; target {self.target.token!r} p={self.target_probability[i][j]:.4f} "
                        f"rank {self.target_rank[i][j]}"
                    )
                hover_row.append(text)
            hover.append(hover_row)
        value_label = f"p({self.target.token!r})" if self.target else "top-1 probability"
        grid = Heatmap(
            f"{self.lens}: top token at each layer and position",
            values,
            row_labels,
            col_labels,
            row_title="layer",
            col_title="position (the token the prediction comes after)",
            value_label=value_label,
            cell_text=[[_short(self.top[i][j][0].token) for j in range(len(self.positions))] for i in order],
            hover=hover,
        )
        candidates = Heatmap(
            f"probability of candidate tokens after {self.tokens[self.candidate_position]!r} "
            f"(position {self.candidate_position})",
            [[self.candidate_probability[i][c] for c in range(len(self.candidates))] for i in order],
            row_labels,
            [repr(t.token) for t in self.candidates],
            row_title="layer",
            col_title="candidate",
            value_label="probability",
            cell_text=[[f"{self.candidate_probability[i][c]:.2f}" for c in range(len(self.candidates))] for i in order],
        )
        tuned = self.lens == "tuned lens"
        return Figure(
            f"{self.model}: {self.lens}",
            [grid, candidates],
            **explanation(
                "logit_lens",
                lens=note("logit_lens", "tuned" if tuned else "plain"),
                colour=note("logit_lens", "target_colour", token=repr(self.target.token))
                if self.target
                else note("logit_lens", "top_colour"),
                lens_caveat=note("logit_lens", "tuned_caveat" if tuned else "plain_caveat"),
            ),
            extra={"lens": self.lens + (f" ({self.lens_note})" if self.lens_note else "")},
        )

    def _json_layers(self) -> list[dict]:
        """One row per layer: each position's top tokens and KL (and the target's probability and rank)."""
        rows = []
        for i, layer in enumerate(self.layers):
            cells = []
            for j, position in enumerate(self.positions):
                cell = {"position": position, "top": self.top[i][j], "kl_to_output": self.kl_to_output[i][j]}
                if self.target_probability is not None and self.target_rank is not None:
                    cell["target_probability"] = self.target_probability[i][j]
                    cell["target_rank"] = self.target_rank[i][j]
                cells.append(cell)
            row = {"layer": layer, "hook": lens_hook(layer), "positions": cells}
            rows.append(row | {"candidate_probability": self.candidate_probability[i]})
        return rows


def logit_lens(
    model: Model,
    prompt: str,
    *,
    k: int = 5,
    target: str | None = None,
    positions: Sequence[int] | None = None,
    candidates: Sequence[str] | None = None,
    candidate_position: int = -1,
    lens: TunedLens | None = None,
    run: Run | None = None,
) -> LogitLens:
    """Decode every layer's residual stream at ``positions`` (default: all) into top-``k`` tokens.

    ``target`` (text, its first token is used, e.g. ``" Paris"``) gets its probability and rank at every
    layer and position. ``candidates`` (texts, first token each) are followed through the layers at
    ``candidate_position``; by default they are the model's top ``k`` there, plus the target.
    ``lens`` (a ``TunedLens``) turns the logit lens into the tuned lens. ``run``: a run of ``prompt`` that
    cached ``blocks.0.resid_pre`` and ``blocks.*.resid_post`` (and logits or ``ln_final``), to reuse.
    """
    if not 1 <= k <= 100:
        raise InputError(f"k must be in 1..100, got {k}")
    if lens is not None:
        lens.check_fits(model)
    if run is None:
        run = model.run(prompt, cache=[lens_hook(EMBED_LAYER), "blocks.*.resid_post"])
    n = run.tokens.shape[1]
    chosen = [_absolute(p, n) for p in (positions if positions is not None else range(n))]
    if not chosen:
        raise InputError("no positions chosen; pass at least one position, e.g. -1 for the last token")
    chosen = sorted(set(chosen))
    focus = _absolute(candidate_position, n)
    decode_at = sorted({*chosen, focus})
    rows = torch.tensor(decode_at)
    output_log_probs = torch.log_softmax(model.logits_at(run, decode_at).float(), dim=-1)

    target_token = model.token_id(target, "target") if target is not None else None
    focus_row = decode_at.index(focus)
    candidate_ids = _candidate_ids(model, candidates, output_log_probs[focus_row], k, target_token)
    keep = [decode_at.index(p) for p in chosen]

    layers = [EMBED_LAYER, *range(model.n_layers)]
    with torch.inference_mode():
        resids = []
        for layer in layers:
            resid = run.cache[lens_hook(layer)][0, rows]
            resids.append(lens.translate(layer, resid) if lens is not None else resid)
        # Every layer in one stream of unembedding chunks: the unembedding matrix (671 MB for Gemma 3)
        # is then read once per chunk instead of once per layer.
        reference_rows = torch.arange(len(decode_at)).repeat(len(layers))
        stats = _decode(model, torch.cat(resids), output_log_probs, reference_rows, k, target_token, candidate_ids)
    top, kl, target_p, target_r, cand_p = [], [], [], [], []
    for index in range(len(layers)):
        offset = index * len(decode_at)
        top.append([[_token(model, t, p) for t, p in stats.top[offset + j]] for j in keep])
        kl.append([stats.kl[offset + j] for j in keep])
        if target_token is not None:
            target_p.append([stats.target_p[offset + j] for j in keep])
            target_r.append([stats.target_rank[offset + j] for j in keep])
        cand_p.append(stats.candidate_p[offset + focus_row])
    output_p = output_log_probs.exp()
    return LogitLens(
        model=model.name,
        prompt=prompt,
        lens="tuned lens" if lens is not None else "logit lens",
        lens_note=lens.objective if lens is not None else "",
        tokens=model.to_str_tokens(run.tokens[0]),
        positions=chosen,
        layers=layers,
        top=top,
        kl_to_output=kl,
        target=_token(model, target_token, float(output_p[focus_row, target_token]))
        if target_token is not None
        else None,
        target_probability=target_p if target_token is not None else None,
        target_rank=target_r if target_token is not None else None,
        candidate_position=focus,
        candidates=[_token(model, c, float(output_p[focus_row, c])) for c in candidate_ids],
        candidate_probability=cand_p,
    )


def _candidate_ids(
    model: Model, candidates: Sequence[str] | None, focus_log_probs: torch.Tensor, k: int, target: int | None
) -> list[int]:
    """The token ids to follow through the layers: ``candidates`` (first token each) if given, else the
    output's top ``k`` at the focus position plus the target; duplicates dropped, order kept."""
    if candidates is not None:
        candidate_ids = [model.token_id(c, "candidate") for c in candidates]
        if not candidate_ids:
            raise InputError("candidates is empty; give at least one token text, or leave it out")
    else:
        candidate_ids = torch.topk(focus_log_probs, min(k, focus_log_probs.shape[-1])).indices.tolist()
        if target is not None and target not in candidate_ids:
            candidate_ids.append(target)
    return list(dict.fromkeys(candidate_ids))


@dataclass(frozen=True)
class _Stats:
    top: list[list[tuple[int, float]]]  # [row][k] (token id, probability)
    kl: list[float]
    target_p: list[float]
    target_rank: list[int]
    candidate_p: list[list[float]]


def _decode(
    model: Model,
    resid: torch.Tensor,
    output_log_probs: torch.Tensor,
    reference_rows: torch.Tensor,
    k: int,
    target: int | None,
    candidates: list[int],
) -> _Stats:
    """Top-k, KL to the output, target and candidate statistics of decoded residuals, chunk by chunk.

    Row ``i`` of ``resid`` is compared with ``output_log_probs[reference_rows[i]]``.
    """
    stats = _Stats([], [], [], [], [])
    for start in range(0, resid.shape[0], CHUNK):
        log_probs = torch.log_softmax(model.unembed(resid[start : start + CHUNK]).float(), dim=-1)
        reference = output_log_probs[reference_rows[start : start + CHUNK]]
        stats.kl.extend(kl_divergence(reference, log_probs).tolist())
        best = torch.topk(log_probs, min(k, log_probs.shape[-1]))
        for values, ids in zip(best.values.exp().tolist(), best.indices.tolist(), strict=True):
            stats.top.append(list(zip(ids, values, strict=True)))
        if target is not None:
            target_lp = log_probs[:, target]
            stats.target_p.extend(target_lp.exp().tolist())
            stats.target_rank.extend(((log_probs > target_lp[:, None]).sum(-1) + 1).tolist())
        stats.candidate_p.extend(log_probs[:, candidates].exp().tolist())
    return stats


def _absolute(position: int, n: int) -> int:
    if not -n <= position < n:
        raise InputError(
            f"position {position} is out of range for a prompt of {n} tokens (valid: 0..{n - 1} or -{n}..-1)"
        )
    return position % n


def _token(model: Model, token_id: int, probability: float) -> LensToken:
    return LensToken(model.tokenizer.decode([token_id]), int(token_id), float(probability))


def _short(token: str, width: int = 8) -> str:
    text = token.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"
