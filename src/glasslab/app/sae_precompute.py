"""Precompute every dashboard and label of an SAE trained into the store, as a job with progress.

A shipped SAE comes with its atlas of dashboards and its labels (``sae.labels.package_sae``); one trained
later from the workbench or the CLI has neither, so each dashboard is a live scan of the corpus. This job
does for it what packaging does: one scan of the corpus's train split for every feature's top contexts,
histogram and promoted tokens, labels named from them, and their detection scores on the test split,
written beside the SAE. Like a training it runs off the model worker: its forward passes take turns with
every other request, so the workbench keeps answering.
"""

from __future__ import annotations

from ..errors import InputError
from ..methods.features.labels import precompute_features
from ..operations import OPERATIONS as DECLARED
from ..operations.options import Options
from .ops import Ctx, declared
from .sae_training import OnWorker
from .saes import load_listed, resolve, sae_reads


def _store_sae(ctx: Ctx, body: Options):
    name, folder = resolve(ctx.model, body.sae)
    if not name.startswith("store:") or folder is None:
        raise InputError(
            f"sae: '{name}' is not an SAE trained into the store; shipped SAEs come with their dashboards "
            "precomputed, and a hub SAE's files are not glasslab's to change"
        )
    return name, folder


def precompute_op(ctx: Ctx, body: Options) -> dict:
    name, folder = _store_sae(ctx, body)
    sae, _ = load_listed(ctx.model, name)
    total = body.sequences + body.held_out_sequences
    done = 0
    ctx.job.report(
        stage="scanning the corpus for every feature's top contexts, then scoring labels", done=0, total=total
    )

    def forward(sequences: int) -> None:
        nonlocal done
        done += sequences
        ctx.job.report(done=min(done, total))

    model = OnWorker(ctx.state, ctx.model, ctx.job.cancel, forward)
    described = precompute_features(
        model,  # type: ignore[arg-type]
        sae,
        folder,
        sequences=body.sequences,
        held_out_sequences=body.held_out_sequences,
    )
    ctx.job.report(done=total)  # the held-out split may hold fewer sequences than asked for
    return {**described.summary(), "sae": name}


OPERATIONS = [
    declared(
        DECLARED["sae-precompute"],
        precompute_op,
        deterministic=lambda body: False,
        off_worker=True,
        job_only=True,
        precheck=_store_sae,
        reads=sae_reads,
    ),
]
