"""Precompute every dashboard and label of an SAE trained into the store, as a job with progress.

A shipped SAE comes with its atlas of dashboards and its labels (``sae.labels.package_sae``); one trained
later from the workbench or the CLI has neither, so each dashboard is a live scan of the corpus. This job
does for it what packaging does: one scan of the corpus's train split for every feature's top contexts,
histogram and promoted tokens, labels named from them, and their detection scores on the test split,
written beside the SAE. Like a training it runs off the model worker: its forward passes take turns with
every other request, so the workbench keeps answering.

A request with ``on_cluster`` scans the train split on the server's Ray cluster (``glasslab serve --cluster``;
``scan_features(cluster=)``, whose result is the same); the held-out scoring still runs here. A cancel stops
the cluster's workers (``on_cluster.stopped_on_cancel``); nothing is written before both parts are done.
"""

from __future__ import annotations

import contextlib

from ..errors import InputError
from ..methods.features.labels import precompute_features
from ..operations import OPERATIONS as DECLARED
from ..operations.options import Options
from .on_cluster import check_cluster, claimed, stopped_on_cancel
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


def check_precompute(ctx: Ctx, body: Options):
    """The SAE's listed name and folder, refused (400) for an SAE not in the store or a cluster this server lacks."""
    found = _store_sae(ctx, body)
    if body.on_cluster:
        check_cluster(ctx)
    return found


def precompute_op(ctx: Ctx, body: Options) -> dict:
    name, folder = check_precompute(ctx, body)
    sae, _ = load_listed(ctx.model, name)
    total = body.sequences + body.held_out_sequences
    done = 0
    where = " on the Ray cluster" if body.on_cluster else ""
    ctx.job.report(
        stage=f"scanning the corpus{where} for every feature's top contexts, then scoring labels", done=0, total=total
    )

    scoring = False  # on the cluster: whether the held-out scoring, which runs here, has begun

    def scanned(sequences: int) -> None:  # a unit the cluster scanned: its passes are not on the model worker
        nonlocal done
        done += sequences
        ctx.job.report(done=min(done, body.sequences))

    def forward(sequences: int) -> None:
        nonlocal done, scoring
        if body.on_cluster and not scoring:  # the cluster scanned the train split; held-out scoring runs here
            done, scoring = body.sequences, True
            ctx.job.report(stage="scoring the labels on held-out text")
        done += sequences
        ctx.job.report(done=min(done, total))

    model = OnWorker(ctx.state, ctx.model, ctx.job.cancel, forward)
    options = dict(sequences=body.sequences, held_out_sequences=body.held_out_sequences)
    with contextlib.ExitStack() as on_cluster:
        if body.on_cluster:
            on_cluster.enter_context(claimed(ctx))
            on_cluster.enter_context(stopped_on_cancel(ctx, "scan"))
            options.update(cluster=ctx.cluster, on_scanned=scanned)
        described = precompute_features(model, sae, folder, **options)  # type: ignore[arg-type]
    ctx.job.report(done=total)  # the held-out split may hold fewer sequences than asked for
    return {**described.summary(), "sae": name, "on_cluster": body.on_cluster}


OPERATIONS = [
    declared(
        DECLARED["sae-precompute"],
        precompute_op,
        deterministic=lambda body: False,
        off_worker=True,
        job_only=True,
        precheck=check_precompute,
        reads=sae_reads,
    ),
]
