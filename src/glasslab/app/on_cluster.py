"""A workbench job's training on the server's Ray cluster (``glasslab serve --cluster``): the link that brings
rank 0's steps back to the job's progress and takes the job's cancel to every rank.

The trainer calls ``on_step`` on every Ray worker, so it must be picklable and must stop all ranks at the
same step (a rank that stops alone would leave the others waiting in a collective): rank 0 reports its step
to a small Ray actor and reads the cancel flag from it, then broadcasts the answer to the other ranks.
The server's job thread polls the actor for the latest step and sets the flag when the job is cancelled.

A job's corpus passes on the cluster (a harvest, a scan) run on the cluster's kept unit workers, which have no
such link: a cancel stops those workers (``stopped_on_cancel``), so no unit runs or writes after it. One job
uses the cluster at a time (``claimed``): a data-parallel training takes every worker's CPU and stops the kept
workers, which would break another job's scan. Ray is imported only when a job runs on the cluster.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from .ops import Ctx
from .state import Cancelled

POLL_SECONDS = 0.25
STARTED = "starting the Ray workers; each loads the model and reads activations"
WAITING = "waiting for the Ray cluster: another job is running on it"
_cluster_in_use = threading.RLock()  # reentrant: a job's harvest and its training hold it in turn


class StepLink:
    """The Ray actor between the ranks and the job: the latest step reported, and whether to stop."""

    def __init__(self) -> None:
        self.latest: tuple[int, dict[str, float]] | None = None
        self.stop = False

    def report(self, step: int, metrics: dict[str, float]) -> bool:
        self.latest = (step, metrics)
        return self.stop

    def step(self) -> tuple[int, dict[str, float]] | None:
        return self.latest

    def cancel(self) -> None:
        self.stop = True


@dataclass(frozen=True)
class ClusterSteps:
    """``on_step`` for every rank: rank 0 reports to the link; all ranks stop together when it says so."""

    link: Any  # a ray.actor.ActorHandle of StepLink

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        import ray
        import torch.distributed as dist

        grouped = dist.is_initialized()
        stop = [False]
        if not grouped or dist.get_rank() == 0:
            stop[0] = ray.get(self.link.report.remote(step, metrics))
        if grouped:
            dist.broadcast_object_list(stop, src=0)
        if stop[0]:
            raise KeyboardInterrupt  # the trainer's way to stop: it keeps a checkpoint and saves no SAE


def check_cluster(ctx: Ctx, batch_size: int | None = None) -> None:
    """Refuse (400) a job asking for the cluster when the server has none, the model cannot be reloaded by
    the workers, or a training's batch does not divide among them (``batch_size`` None: not a training)."""
    if ctx.cluster is None:
        raise InputError(
            "this server has no Ray cluster; start it with `glasslab serve --cluster local` (or auto, or an address)"
        )
    if ctx.model.stored_at is None:
        raise InputError("the loaded model was not loaded from a folder, so Ray workers cannot load it")
    workers = ctx.cluster.workers
    if workers is None and _connected():  # a server started without --workers: as many as Ray has now
        workers = ctx.cluster.worker_count(sys.modules["ray"])
    if batch_size is not None and workers is not None:
        _check_batch(batch_size, workers)


def check_workers(ctx: Ctx, batch_size: int) -> None:
    """Refuse a training's batch that does not divide among the cluster's workers, counted on Ray where the
    server was started without --workers (connecting, in the job): before a harvest, not after it."""
    spec = ctx.cluster  # check_cluster ran first
    _check_batch(batch_size, spec.worker_count(spec.connect()))  # type: ignore[union-attr]


def _check_batch(batch_size: int, workers: int) -> None:
    if batch_size % workers:
        raise InputError(
            f"batch_size {batch_size} does not divide among the cluster's {workers} workers; use a multiple of "
            f"{workers}"
        )


def _connected() -> bool:
    """Whether this process is connected to Ray already (importing Ray alone takes seconds)."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


@contextlib.contextmanager
def followed(ctx: Ctx, show_step: Callable[[int, dict[str, float]], None]) -> Iterator[ClusterSteps]:
    """The ``on_step`` to train with, while a thread shows each step rank 0 reports (``show_step``) and passes
    the job's cancel on to the ranks; the link is removed at the end."""
    with claimed(ctx), _linked(ctx, show_step) as on_step:
        yield on_step


@contextlib.contextmanager
def _linked(ctx: Ctx, show_step: Callable[[int, dict[str, float]], None]) -> Iterator[ClusterSteps]:
    ray = ctx.cluster.connect()  # type: ignore[union-attr]  (check_cluster ran first)
    link = ray.remote(num_cpus=0)(StepLink).remote()
    done = threading.Event()

    def follow() -> None:
        shown = None
        while not done.wait(POLL_SECONDS):
            if ctx.job.cancel.is_set():  # type: ignore[union-attr]  (a job-only operation)
                link.cancel.remote()
            latest = ray.get(link.step.remote())
            if latest is not None and latest[0] != shown:
                shown = latest[0]
                show_step(*latest)

    follower = threading.Thread(target=follow, name="glasslab-cluster-steps", daemon=True)
    follower.start()
    try:
        yield ClusterSteps(link)
    finally:
        done.set()
        follower.join()
        ray.kill(link)


@contextlib.contextmanager
def claimed(ctx: Ctx) -> Iterator[None]:
    """The cluster for this job alone (waiting, cancellable, while another job runs on it)."""
    cancel = ctx.job.cancel  # type: ignore[union-attr]  (a job-only operation)
    if not _cluster_in_use.acquire(blocking=False):
        ctx.job.report(stage=WAITING, done=0, total=0)  # type: ignore[union-attr]
        while not _cluster_in_use.acquire(timeout=POLL_SECONDS):
            if cancel.is_set():
                raise Cancelled("the job was cancelled while it waited for the cluster")
    try:
        yield
    finally:
        _cluster_in_use.release()


@contextlib.contextmanager
def stopped_on_cancel(ctx: Ctx, what: str) -> Iterator[None]:
    """Run ``what`` (a harvest or scan on the cluster's unit workers) so that the job's cancel stops it: a
    thread stops the workers (``release_workers``), and any started after that, so the units in flight fail
    and none writes afterwards; that failure is the job's ``Cancelled``."""
    from ..cluster import release_workers

    cancel, done = ctx.job.cancel, threading.Event()  # type: ignore[union-attr]  (a job-only operation)

    def watch() -> None:
        while not done.wait(POLL_SECONDS):
            if cancel.is_set():
                with contextlib.suppress(KeyError):  # the job's thread released the same workers meanwhile
                    release_workers()

    watcher = threading.Thread(target=watch, name="glasslab-cluster-cancel", daemon=True)
    watcher.start()
    try:
        yield
    except Exception:
        if cancel.is_set():
            raise Cancelled(f"the job was cancelled during the {what}") from None
        raise
    finally:
        done.set()
        watcher.join()
    if cancel.is_set():  # cancelled as the last unit finished: stop before the next phase begins
        raise Cancelled(f"the job was cancelled during the {what}")
