"""Occlusion / leave-one-out: how far ``f`` falls when a token (or a window of tokens) is removed.

``score(i) = f(prompt) - f(prompt with token i at the baseline)``. With ``window = w > 1`` every run
of ``w`` consecutive attributed tokens is removed together and each token's score is the mean drop
over the windows that contain it (occlusion in the sense of Zeiler & Fergus 2014, on tokens). One
batched evaluation per window; unlike gradients it sees the real, non-linear effect of removal, but
not interactions between tokens far apart (two tokens that each make the other redundant both score
near 0).
"""

from __future__ import annotations

import torch

from ...errors import InputError
from .prepared import Prepared
from .result import MethodOutput


def occlusion(prep: Prepared, window: int = 1) -> MethodOutput:
    m = prep.n_players
    if not 1 <= window <= m:
        raise InputError(f"the occlusion window must be in 1..{m} (the prompt's attributed tokens), got {window}")
    starts = torch.arange(m - window + 1)
    covered = (torch.arange(m)[None, :] >= starts[:, None]) & (torch.arange(m)[None, :] < starts[:, None] + window)
    drops = prep.full_value - prep.coalition_values(~covered)  # [windows]
    scores = (covered.double() * drops[:, None]).sum(0) / covered.sum(0)
    return MethodOutput(scores, evaluations=len(starts), details={"window": window})
