"""Which elements of an activation an intervention touches.

Positions are absolute token positions in the sequence; a negative position counts back from the end
of each prompt (``-1`` is every prompt's last real token, whatever its padding). During generation a
forward pass sees only the new positions (``offset`` onwards) for query-indexed hooks, and the keys
and values of every position so far (or of the window a sliding-window cache keeps, ``key_offset``
onwards).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InputError
from ..model.hooks import ApplyContext, Layout

Index = int | Sequence[int] | None


def as_list(index: Index) -> list[int] | None:
    if index is None:
        return None
    if isinstance(index, int):
        return [index]
    return [int(i) for i in index]


def position_mask(positions: Index, n: int, offset: int, prompt_lengths: torch.Tensor) -> torch.Tensor | None:
    """[batch, n] bool: which of the ``n`` positions starting at ``offset`` are selected (None = all)."""
    chosen = as_list(positions)
    if chosen is None:
        return None
    batch = prompt_lengths.shape[0]
    mask = torch.zeros(batch, n, dtype=torch.bool)
    local = torch.arange(n) + offset
    for p in chosen:
        absolute = prompt_lengths + p if p < 0 else torch.full((batch,), p)
        mask |= local[None, :] == absolute[:, None]
    return mask


def element_mask(
    layout: Layout,
    shape: torch.Size,
    ctx: ApplyContext,
    *,
    position: Index,
    head: Index,
    neuron: Index,
    key_position: Index,
) -> torch.Tensor | None:
    """A bool mask broadcastable to ``shape`` selecting the indexed elements, or None for everything."""
    if position is None and head is None and neuron is None and key_position is None:
        return None
    mask = torch.ones((1,) * len(shape), dtype=torch.bool)
    if layout in ("resid", "neurons", "query_heads"):
        pos = position_mask(position, shape[1], ctx.offset, ctx.prompt_lengths)
        if pos is not None:
            mask = mask & pos.view(shape[0], shape[1], *([1] * (len(shape) - 2)))
    elif layout == "kv_heads":
        pos = position_mask(position, shape[1], ctx.key_offset, ctx.prompt_lengths)
        if pos is not None:
            mask = mask & pos.view(shape[0], shape[1], 1, 1)
    elif layout == "pattern":
        query = position_mask(position, shape[2], ctx.offset, ctx.prompt_lengths)
        if query is not None:
            mask = mask & query.view(shape[0], 1, shape[2], 1)
        keys = position_mask(key_position, shape[3], ctx.key_offset, ctx.prompt_lengths)
        if keys is not None:
            mask = mask & keys.view(shape[0], 1, 1, shape[3])
    if head is not None:
        heads = torch.zeros(shape[1 if layout == "pattern" else 2], dtype=torch.bool)
        heads[as_list(head)] = True
        view = [1] * len(shape)
        view[1 if layout == "pattern" else 2] = -1
        mask = mask & heads.view(view)
    if neuron is not None:
        neurons = torch.zeros(shape[-1], dtype=torch.bool)
        neurons[as_list(neuron)] = True
        mask = mask & neurons.view(*([1] * (len(shape) - 1)), -1)
    return mask


def aligned_source(
    source: torch.Tensor, act: torch.Tensor, layout: Layout, ctx: ApplyContext, mask: torch.Tensor | None, what: str
) -> torch.Tensor:
    """``source`` cut to the positions ``act`` covers, so it can stand in for ``act`` element by element.

    Positions the source does not have keep ``act``'s values; selecting one of them is an error.
    """
    source = source.to(device=act.device, dtype=act.dtype)
    if source.shape[0] not in (1, act.shape[0]):
        raise InputError(
            f"{what} has batch size {source.shape[0]} but the run has {act.shape[0]}; "
            "use a source with the same number of prompts, or one prompt to apply to all"
        )
    pos_dim = 2 if layout == "pattern" else 1
    feature_dims = slice(1, 2) if layout == "pattern" else slice(2, None)
    if source.shape[feature_dims] != act.shape[feature_dims]:
        raise InputError(f"{what} has shape {tuple(source.shape)}, which does not fit activations {tuple(act.shape)}")
    start = ctx.key_offset if layout == "kv_heads" else ctx.offset
    length = act.shape[pos_dim]
    available = max(0, min(length, source.shape[pos_dim] - start))
    if available < length and mask is not None:
        beyond = mask.expand(act.shape).narrow(pos_dim, available, length - available)
        if beyond.any():
            raise InputError(
                f"{what} covers {source.shape[pos_dim]} positions but position {start + available} or later "
                "was selected; pass position=... to limit the intervention to positions the source has"
            )
    elif available < length:
        raise InputError(
            f"{what} covers {source.shape[pos_dim]} positions but this forward pass reaches position "
            f"{start + length - 1}; pass position=... to limit the intervention to positions the source has"
        )
    piece = source.narrow(pos_dim, start, available)
    if layout == "pattern":
        if piece.shape[3] < ctx.key_offset + act.shape[3]:
            raise InputError(f"{what} has fewer key positions than this run")
        piece = piece[..., ctx.key_offset : ctx.key_offset + act.shape[3]]
    piece = piece.expand(act.shape[0], *piece.shape[1:])
    if available == length:
        return piece
    return torch.cat([piece, act.narrow(pos_dim, available, length - available)], dim=pos_dim)
