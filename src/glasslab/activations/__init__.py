"""The sharded activation store: harvest activations at any hooks into shards with a manifest (a local
folder or any fsspec URL, locally or on a Ray cluster), and read them back for training and scans."""

from .harvest import Harvest, HarvestJob, harvest, plan_shards
from .reader import HarvestedRows, open_harvest
from .shards import HarvestSettings, Manifest, ShardFolder, ShardRecord

__all__ = [
    "Harvest",
    "HarvestJob",
    "HarvestSettings",
    "HarvestedRows",
    "Manifest",
    "ShardFolder",
    "ShardRecord",
    "harvest",
    "open_harvest",
    "plan_shards",
]
