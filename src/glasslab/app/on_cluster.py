"""A workbench job's training on the server's Ray cluster (``glasslab serve --cluster``): the link that brings
rank 0's steps back to the job's progress and takes the job's cancel to every rank.

The trainer calls ``on_step`` on every Ray worker, so it must be picklable and must stop all ranks at the
same step (a rank that stops alone would leave the others waiting in a collective): rank 0 reports its step
to a small Ray actor and reads the cancel flag from it, then broadcasts the answer to the other ranks.
The server's job thread polls the actor for the latest step and sets the flag when the job is cancelled.
Ray is imported only here, and only when a job runs on the cluster.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from .ops import Ctx

POLL_SECONDS = 0.25
STARTED = "starting the Ray workers; each loads the model and reads activations"


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


def check_cluster(ctx: Ctx, batch_size: int) -> None:
    """Refuse (400) a job asking for the cluster when the server has none, the model cannot be reloaded by
    the workers, or the batch does not divide among them."""
    if ctx.cluster is None:
        raise InputError(
            "this server has no Ray cluster; start it with `glasslab serve --cluster local` (or auto, or an address)"
        )
    if ctx.model.stored_at is None:
        raise InputError("the loaded model was not loaded from a folder, so Ray workers cannot load it")
    workers = ctx.cluster.workers
    if workers is not None and batch_size % workers:
        raise InputError(f"batch_size {batch_size} does not divide among the cluster's {workers} workers")


@contextlib.contextmanager
def followed(ctx: Ctx, show_step: Callable[[int, dict[str, float]], None]) -> Iterator[ClusterSteps]:
    """The ``on_step`` to train with, while a thread shows each step rank 0 reports (``show_step``) and passes
    the job's cancel on to the ranks; the link is removed at the end."""
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
