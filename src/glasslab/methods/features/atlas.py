"""Precomputed dashboards (the "atlas"): one corpus scan for every feature of an SAE, kept beside it.

A dashboard scanned live costs a pass of the model over the corpus (20 s and more on a laptop CPU); read
from the atlas it costs a file lookup. ``dashboards.safetensors`` holds, for every feature that fired in
the scan, what ``scan.scan_features`` keeps (top contexts with their windows, histogram, density, sum and
maximum) and the tokens its decoder direction promotes and suppresses, restricted to tokens that occur
in the scanned text. The metadata names the corpus, split and amount scanned, so a dashboard read from
it says exactly which text it came from. A feature missing from the file never fired in the scan.

Plain tensors and string metadata in safetensors: nothing is unpickled.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save, save_file

from ...dictionaries.loading import origin_of
from ...errors import InputError
from ...model.model import Model
from ...store import replace_files
from .basis import FeatureDictionary, TokenEffect
from .scan import FeatureScan

ATLAS_FILE = "dashboards.safetensors"
FORMAT = "1"
_STATS = {  # field of FeatureScan -> dtype it is stored in (halves for the large per-context tensors)
    "top_values": torch.float32,
    "top_sequence": torch.int32,
    "top_position": torch.int32,
    "window_ids": torch.int32,
    "window_acts": torch.float16,
    "fired": torch.int64,
    "total": torch.float64,
    "maximum": torch.float32,
    "counts": torch.int32,
    "bin_width": torch.float64,
}
_EFFECTS = ("promote_ids", "promote_values", "suppress_ids", "suppress_values")


@dataclass(frozen=True)
class Atlas:
    """The stored scan: ``tensors`` rows follow ``features`` (ascending); ``meta`` says what was scanned."""

    features: list[int]
    tensors: dict[str, torch.Tensor]
    corpus: str  # e.g. "english (train split)"
    sequences: int
    tokens: int
    seq_len: int
    hook: str
    d_sae: int
    direction_note: str

    @property
    def contexts(self) -> int:
        return int(self.tensors["top_values"].shape[1])

    @property
    def window(self) -> int:
        return int(self.tensors["window_ids"].shape[2]) // 2

    def scan(self, features: list[int]) -> FeatureScan:
        """The scan of ``features`` as ``scan_features`` would return it (zeros for any that never fired)."""
        rows = {f: i for i, f in enumerate(self.features)}
        k, span, bins = self.contexts, 2 * self.window + 1, int(self.tensors["counts"].shape[1])
        blank = {
            "top_values": torch.full((k,), float("-inf")),
            "top_sequence": torch.zeros(k, dtype=torch.long),
            "top_position": torch.zeros(k, dtype=torch.long),
            "window_ids": torch.full((k, span), -1, dtype=torch.long),
            "window_acts": torch.zeros(k, span),
            "fired": torch.zeros((), dtype=torch.long),
            "total": torch.zeros((), dtype=torch.float64),
            "maximum": torch.zeros(()),
            "counts": torch.zeros(bins, dtype=torch.long),
            "bin_width": torch.zeros((), dtype=torch.float64),
        }
        picked = {}
        for name, empty in blank.items():
            stored = self.tensors[name]
            rows_of = [stored[rows[f]].to(empty.dtype) if f in rows else empty for f in features]
            picked[name] = torch.stack(rows_of)
        return FeatureScan(
            corpus=self.corpus,
            features=list(features),
            sequences=self.sequences,
            tokens=self.tokens,
            token_counts=torch.zeros(0, dtype=torch.long),
            **picked,
        )

    def effects(self, model: Model, features: list[int], top: int) -> dict[int, tuple[list, list]]:
        """Stored promoted and suppressed tokens of those ``features`` the atlas keeps (none when ``top`` is
        more than it kept)."""
        rows = {f: i for i, f in enumerate(self.features)}
        if top > self.tensors["promote_ids"].shape[1]:
            return {}
        decode = model.tokenizer.decode

        def listed(ids: torch.Tensor, values: torch.Tensor) -> list[TokenEffect]:
            pairs = zip(ids[:top].tolist(), values[:top].tolist(), strict=True)
            return [TokenEffect(decode([i]), i, v) for i, v in pairs]

        t = self.tensors
        return {
            f: (
                listed(t["promote_ids"][rows[f]], t["promote_values"][rows[f]]),
                listed(t["suppress_ids"][rows[f]], t["suppress_values"][rows[f]]),
            )
            for f in features
            if f in rows
        }


def make_atlas(
    scan: FeatureScan,
    sae: FeatureDictionary,
    promotes: list[list[TokenEffect]],
    suppresses: list[list[TokenEffect]],
    direction_note: str,
    *,
    seq_len: int,
    contexts: int = 10,
) -> Atlas:
    """The atlas of the features of ``scan`` that fired (their first ``contexts`` top contexts)."""
    keep = [i for i, _ in enumerate(scan.features) if int(scan.fired[i]) > 0]
    index = torch.tensor(keep, dtype=torch.long)
    tensors = {}
    for name, dtype in _STATS.items():
        value = getattr(scan, name)[index]
        if value.dim() >= 2 and name.startswith(("top_", "window_")):
            value = value[:, :contexts]
        tensors[name] = value.to(dtype).contiguous()
    for prefix, lists in (("promote", promotes), ("suppress", suppresses)):
        width = min((len(lists[i]) for i in keep), default=0)
        kept = [lists[i][:width] for i in keep]
        tensors[f"{prefix}_ids"] = torch.tensor([[e.token_id for e in row] for row in kept], dtype=torch.int32).reshape(
            len(keep), width
        )
        tensors[f"{prefix}_values"] = torch.tensor([[e.value for e in row] for row in kept]).reshape(len(keep), width)
    tensors["features"] = torch.tensor([scan.features[i] for i in keep], dtype=torch.int32)
    return Atlas(
        features=[scan.features[i] for i in keep],
        tensors=tensors,
        corpus=scan.corpus,
        sequences=scan.sequences,
        tokens=scan.tokens,
        seq_len=seq_len,
        hook=sae.hook,
        d_sae=sae.d_sae,
        direction_note=direction_note,
    )


def atlas_bytes(atlas: Atlas) -> bytes:
    """The file's bytes (for ``save_sae(..., extra_files={ATLAS_FILE: ...})``)."""
    return save(atlas.tensors, metadata=_metadata(atlas))


def write_atlas(folder: str | os.PathLike, atlas: Atlas) -> Path:
    """Write the atlas into an SAE folder (temp file + rename: a reader never sees half a file), recorded in the
    folder's manifest when it has one (so the saved SAE still verifies)."""
    target = Path(folder).expanduser() / ATLAS_FILE
    if not target.parent.is_dir():
        raise InputError(f"SAE folder '{target.parent}' does not exist")
    replace_files(target.parent, {ATLAS_FILE: lambda path: save_file(atlas.tensors, path, metadata=_metadata(atlas))})
    return target


def _metadata(atlas: Atlas) -> dict[str, str]:
    fields = ("corpus", "sequences", "tokens", "seq_len", "hook", "d_sae", "direction_note")
    return {"format": FORMAT, "atlas": json.dumps({f: getattr(atlas, f) for f in fields})}


def read_atlas(folder: str | os.PathLike | None, sae: FeatureDictionary) -> Atlas | None:
    """The atlas beside an SAE, or None when there is none; a damaged or mismatched file is a one-line
    error (it would otherwise show wrong dashboards)."""
    if folder is None:
        return None
    path = Path(folder).expanduser() / ATLAS_FILE
    if not path.is_file():
        return None
    fix = "delete it or rebuild it with `glasslab sae precompute`"
    try:
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not a dict)
        info = json.loads(meta["atlas"])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise InputError(f"'{path}' is not a readable dashboards file ({exc.__class__.__name__}); {fix}") from None
    missing = [n for n in (*_STATS, *_EFFECTS, "features") if n not in tensors]
    if meta.get("format") != FORMAT or missing:
        raise InputError(f"'{path}' is not a glasslab dashboards file (format {FORMAT}); {fix}")
    if info.get("hook") != sae.hook or info.get("d_sae") != sae.d_sae:
        raise InputError(f"'{path}' was built for another SAE ({info.get('hook')}, {info.get('d_sae')}); {fix}")
    features = tensors.pop("features").tolist()
    rows = len(features)
    if any(t.shape[0] != rows for t in tensors.values()) or not all(0 <= f < sae.d_sae for f in features):
        raise InputError(f"'{path}' has inconsistent rows; {fix}")
    return Atlas(features=features, tensors=tensors, **info)


def atlas_of(sae: FeatureDictionary) -> Atlas | None:
    """The SAE's atlas (read once, then kept on the SAE), or None."""
    if getattr(sae, "atlas_cache", None) is None:
        sae.atlas_cache = read_atlas(origin_of(sae).folder, sae) or False
    return sae.atlas_cache or None
