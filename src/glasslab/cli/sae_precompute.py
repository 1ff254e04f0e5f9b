"""``glasslab sae precompute``: label every feature of a trained SAE and precompute every dashboard."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from ..errors import InputError
from .app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, friendly_errors, out
from .sae import AnyModelOpt, SaeOpt, load_with_model, sae_app


@sae_app.command("precompute")
@friendly_errors
def sae_precompute_command(
    sae: SaeOpt,
    corpus: Annotated[
        str | None, typer.Option(help="Corpus to scan (default: the SAE's training corpus, else builtin).")
    ] = None,
    sequences: Annotated[int, typer.Option(help="Train-split sequences scanned for contexts and labels.")] = 1024,
    held_out_sequences: Annotated[
        int, typer.Option(help="Test-split sequences on which each label's detection score is measured.")
    ] = 256,
    any_model: AnyModelOpt = False,
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Write labels.json (automatic labels with detection scores) and dashboards.safetensors (every feature's
    dashboard) beside an SAE trained into the store or saved in a folder, so its dashboards open at once."""
    from ..dictionaries.loading import origin_of
    from ..methods.features.labels import precompute_features

    if sae.startswith("default:"):
        raise InputError("shipped SAEs come with their dashboards and labels precomputed; nothing to do")
    loaded, chosen = load_with_model(sae, model, dtype, device, any_model)
    folder = origin_of(chosen).folder
    if folder is None or origin_of(chosen).release is not None:
        raise InputError(f"'{sae}' is not saved in a folder of yours (store:NAME or a path); nothing was written")
    options = {"corpus": corpus} if corpus else {}
    described = precompute_features(
        loaded, chosen, folder, sequences=sequences, held_out_sequences=held_out_sequences, **options
    )
    summary = {**described.summary(), "sae": sae, "folder": str(folder)}
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    out.print(
        f"{summary['dashboards']} dashboards and {summary['labels']} labels ({summary['concepts']} naming a class) "
        f"from {summary['tokens']:,} tokens of {summary['corpus']}, written to {folder}",
        highlight=False,
    )
