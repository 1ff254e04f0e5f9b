"""Reading a harvest back: one hook's rows in harvest order, restartable at any row.

``HarvestedRows`` has the interface of ``glasslab.dictionaries.activations.ActivationStream`` (``width``,
``rows(start)``), so a dictionary trains from a harvest through the same shuffle buffer as from a live
model, and a resumed training re-reads exactly the rows it had.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from ..errors import InputError
from .shards import Manifest, ShardFolder, decode_shard


def open_harvest(url: str, *, model_key: str | None = None) -> tuple[ShardFolder, Manifest]:
    """A complete harvest's folder and manifest (of ``model_key``'s model, when given)."""
    folder = ShardFolder(url)
    manifest = folder.manifest()
    if manifest is None:
        raise InputError(f"'{url}' holds no harvest (no harvest.json); run 'glasslab harvest' first")
    if not manifest.complete:
        raise InputError(f"the harvest in '{url}' is not finished; run the same harvest command again to complete it")
    if model_key is not None and manifest.settings.model != model_key:
        raise InputError(f"the harvest in '{url}' is of model '{manifest.settings.model}', not '{model_key}'")
    return folder, manifest


class HarvestedRows:
    """Rows ``[n, width]`` (float32) at ``hooks`` of a harvest, at most ``max_rows`` of them; several hooks'
    rows side by side in the order given (a transcoder reads an MLP's input and output together)."""

    def __init__(
        self, url: str, hooks: str | Sequence[str], *, model_key: str | None = None, max_rows: int | None = None
    ) -> None:
        self.folder, self.manifest = open_harvest(url, model_key=model_key)
        self.hooks = [hooks] if isinstance(hooks, str) else list(hooks)
        if not self.hooks:
            raise InputError("no hooks given; name the harvested hooks to read")
        missing = [hook for hook in self.hooks if hook not in self.manifest.settings.hooks]
        if missing:
            held = ", ".join(self.manifest.settings.hooks)
            raise InputError(f"the harvest in '{url}' has no '{', '.join(missing)}' (it holds {held})")
        self.width = sum(self.manifest.widths[hook] for hook in self.hooks)
        self.max_rows = max_rows

    def rows(self, start: int = 0) -> Iterator[torch.Tensor]:
        """Chunks (one per shard) beginning exactly at row ``start``."""
        end = self.manifest.rows if self.max_rows is None else min(self.max_rows, self.manifest.rows)
        offset = 0
        for shard in self.manifest.ordered():
            first, offset = offset, offset + shard.rows
            if offset <= start:
                continue
            if first >= end:
                return
            tensors = decode_shard(self.folder, shard)
            rows = torch.cat([tensors[hook].float() for hook in self.hooks], dim=1)
            yield rows[max(0, start - first) : end - first]
