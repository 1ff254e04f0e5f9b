"""Corpus-scale jobs' "what you see / how to read it / what it does not prove" (merged into ``RESULTS``)."""

from __future__ import annotations

from .figures import Explanation

SCALE_RESULTS: dict[str, Explanation] = {
    "harvest": Explanation(
        title="Harvested activations",
        see="The model's activations at the hooks you named, for every token of a stretch of the corpus, written as "
        "shards with a manifest (harvest.json) that records the model, the settings and each shard's checksum.",
        read="Rows are tokens (BOS left out), one tensor per hook per shard, with the tokens and the document each "
        "came from. Training (--activations) and scans read them back in this order; running the same harvest "
        "again finishes one that stopped, and shards already done are kept.",
        caveat="A harvest is tied to the model and settings in its manifest: another model, another corpus or "
        "another sequence length needs a new harvest. Stored in float16 or bfloat16, rows are rounded.",
    ),
}
