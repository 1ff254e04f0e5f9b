"""``glasslab harvest``: activations at hooks into a sharded store, locally or on Ray. Declared in
``glasslab.operations.scale``: here only how its result reads."""

from __future__ import annotations

from rich.markup import escape

from ..activations import Harvest
from ..operations import OPERATIONS
from .app import out
from .derived import declare_command


def show_harvest(result: Harvest) -> None:
    facts = result.to_dict()
    kept = f" ({facts['shards_kept']} were already done)" if facts["shards_kept"] else ""
    out.print(
        f"harvested {facts['rows']:,} rows of {escape(', '.join(facts['hooks']))} into {facts['shards']} shards "
        f"({facts['bytes'] / 1e6:,.1f} MB, {facts['dtype']}){kept}",
        highlight=False,
    )
    out.print(f"in {escape(facts['url'])} (harvest.json lists every shard)", highlight=False)


declare_command(OPERATIONS["harvest"], show_harvest)
