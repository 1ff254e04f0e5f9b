"""``glasslab sae precompute``: label every feature of a trained SAE and precompute every dashboard, declared
in ``glasslab.operations.feature_files``: here only how its result reads."""

from __future__ import annotations

from ..operations import OPERATIONS
from ..operations.feature_files import Precomputed
from .app import out
from .derived import declare_command
from .sae import sae_app


def show_precomputed(result: Precomputed) -> None:
    out.print(
        f"{result.dashboards} dashboards and {result.labels} labels ({result.concepts} naming a class) "
        f"from {result.tokens:,} tokens of {result.corpus}, written to {result.folder}",
        highlight=False,
    )


declare_command(OPERATIONS["sae-precompute"], show_precomputed, on=sae_app, cli_name="precompute")
