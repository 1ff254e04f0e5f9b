"""Run a job's units in this process or on Ray actors, with one progress bar for all of them.

On Ray each worker is an actor that loads the model once (``ModelRecipe``) and runs units as they are
handed to it, two at a time so it never waits for the driver. The workers outlive one job: the next job on
the same model (in the same Ray session) reuses them instead of starting processes and loading the model
again; a job on another model replaces them, and ``release_workers`` hands their resources back. Actors are
restartable and their calls retried (``max_restarts``/``max_task_retries``): a worker killed mid-unit is
started again and the unit run again, so every unit is done once. Units must therefore be idempotent (a
harvest shard is written under its own name, atomically). An error a unit raises itself stops the job.

Units finish in any order on Ray; a caller that adds results in unit order holds those that finished early.
``ahead_per_worker`` bounds that: no unit is handed out more than ``ahead_per_worker`` x workers units past
the oldest one not yet finished, so at most that many results ever wait (workers idle rather than run further
ahead). ``release_workers`` returns once the stopped workers are dead, so nothing they were running can still
write afterwards (a caller may then delete what they wrote into).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from tqdm.auto import tqdm

from ..errors import GlasslabError
from ..progress import progress_enabled
from .connect import ClusterSpec, ray_module
from .recipe import ModelRecipe

if TYPE_CHECKING:
    from ..model.model import Model

Unit = TypeVar("Unit")
Result = TypeVar("Result")
_IN_FLIGHT_PER_WORKER = 2
_RETRIES = 3
_DEATH_SECONDS = 60.0  # how long release_workers waits for a stopped worker to be gone before going on
_DEATH_POLL_SECONDS = 0.05


class UnitJob(ABC, Generic[Unit, Result]):
    """A picklable job: its settings, and ``run`` for one unit on a given model (None for model-free jobs)."""

    @abstractmethod
    def run(self, model: Model | None, unit: Unit) -> Result: ...


class _Worker:
    """A Ray actor: the model, loaded once, running any job's units on it. A model it cannot load (its folder
    is not on this node) is reported by each unit as the one-line error it is, not as a dead actor."""

    def __init__(self, recipe: ModelRecipe | None) -> None:
        self.model, self.failure = None, None
        try:
            self.model = recipe.load() if recipe is not None else None
        except GlasslabError as error:
            self.failure = error

    def run(self, job: UnitJob, unit: Any) -> Any:
        if self.failure is not None:
            raise self.failure
        return job.run(self.model, unit)

    def process(self) -> tuple[str, int]:
        """The node and process this worker runs in (asked once, when it starts: ``release_workers`` waits
        for that process to end)."""
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()


@dataclass(frozen=True)
class _Kept:
    """A live worker, and the answer of its first call (``_Worker.process``)."""

    handle: Any
    process: Any  # ray.ObjectRef of (node id, pid)


_pool: dict[tuple, list[_Kept]] = {}  # the live workers, by (Ray session, model recipe, resources, count)


def _session(ray: Any) -> tuple[str, str]:
    """This connection to Ray: its job and the node it runs on (a new local cluster numbers its jobs from 1
    again, but its node is new), so handles of an earlier session are never reused."""
    context = ray.get_runtime_context()
    return context.get_job_id(), context.get_node_id()


def _workers(ray: Any, spec: ClusterSpec, recipe: ModelRecipe | None) -> list[Any]:
    """The workers for ``recipe``: the live ones if they run it, else new ones (the old ones stopped)."""
    count = spec.worker_count(ray)
    key = (_session(ray), recipe, spec.gpus_per_worker, count)
    if key not in _pool:
        release_workers()  # workers of another model; those of an earlier Ray session are gone with it
        actor = ray.remote(num_cpus=1, num_gpus=spec.gpus_per_worker, max_restarts=_RETRIES, max_task_retries=_RETRIES)
        handles = [actor(_Worker).remote(recipe) for _ in range(count)]
        _pool[key] = [_Kept(handle, handle.process.remote()) for handle in handles]
    return [kept.handle for kept in _pool[key]]


def release_workers() -> None:
    """Stop the workers kept for the next job, giving their CPUs and GPUs back to the cluster (a job that
    needs them, such as a data-parallel training, calls this first: kept workers would hold them forever),
    and return once they are dead: a unit they were running cannot write anything afterwards."""
    if not _pool:
        return
    ray = ray_module()
    current = _session(ray) if ray.is_initialized() else None
    stopped = []
    for key in list(_pool):
        stale = _pool.pop(key)
        if key[0] == current:
            for kept in stale:
                ray.kill(kept.handle, no_restart=True)
            stopped += stale
    deadline = time.monotonic() + _DEATH_SECONDS
    for kept in stopped:
        _await_death(ray, kept, deadline)


def _await_death(ray: Any, kept: _Kept, deadline: float) -> None:
    """Wait (until ``deadline``) for a killed worker to be dead in Ray's eyes (a call to it fails) and, on this
    node, for its process to have exited (Ray marks an actor dead as it tells its process to exit)."""
    while time.monotonic() < deadline:
        try:
            ray.get(kept.handle.__ray_ready__.remote(), timeout=max(0.0, deadline - time.monotonic()))
        except ray.exceptions.RayActorError:
            break
        except ray.exceptions.GetTimeoutError:
            return
        time.sleep(_DEATH_POLL_SECONDS)  # the kill has not reached it yet
    try:
        node, pid = ray.get(kept.process, timeout=max(0.0, deadline - time.monotonic()))
    except Exception:  # it died before it started, or never answered: no process of ours to wait for
        return
    if node != ray.get_runtime_context().get_node_id():
        return
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(_DEATH_POLL_SECONDS)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def run_units(
    job: UnitJob[Unit, Result],
    units: Iterable[Unit],
    *,
    model: Model | None,
    spec: ClusterSpec,
    description: str,
    total: int | None = None,
    weight: Callable[[Unit], int] = lambda unit: 1,
    unit_name: str = "unit",
    ahead_per_worker: int | None = None,
) -> Iterator[tuple[Unit, Result]]:
    """``(unit, result)`` pairs as units finish (in order locally; in completion order on Ray, no unit handed
    out more than ``ahead_per_worker`` x workers units past the oldest unfinished one; None: no bound)."""
    if ahead_per_worker is not None and ahead_per_worker < 1:
        raise ValueError(f"ahead_per_worker must be at least 1, got {ahead_per_worker}")
    bar = tqdm(total=total, desc=description, unit=unit_name, disable=not progress_enabled(), file=sys.stderr)
    try:
        if spec.distributed:
            pairs = _on_ray(job, units, model, spec, ahead_per_worker)
        else:
            pairs = ((unit, job.run(model, unit)) for unit in units)
        for unit, result in pairs:
            bar.update(weight(unit))
            yield unit, result
    finally:
        bar.close()


def _on_ray(
    job: UnitJob, units: Iterable[Any], model: Model | None, spec: ClusterSpec, ahead_per_worker: int | None
) -> Iterator[tuple[Any, Any]]:
    ray = spec.connect()
    recipe = None if model is None else ModelRecipe.of(model, "cuda" if spec.gpus_per_worker > 0 else "cpu")
    workers = _workers(ray, spec, recipe)
    shipped = ray.put(job)  # once per job, not with every unit: a job may carry a large SAE
    pending = enumerate(units)  # each unit with its place in the order
    window = None if ahead_per_worker is None else ahead_per_worker * len(workers)
    free = [index for index in range(len(workers)) for _ in range(_IN_FLIGHT_PER_WORKER)]  # a slot per call
    in_flight: dict[Any, tuple[int, int, Any]] = {}  # result ref -> (worker index, place, unit)
    handed_out = 0

    def fill() -> None:
        """Hand units to free slots, none past the window after the oldest unit still running."""
        nonlocal handed_out
        while free:
            oldest = min((place for _, place, _ in in_flight.values()), default=handed_out)
            if window is not None and handed_out >= oldest + window:
                return
            place, unit = next(pending, (None, _DONE))
            if unit is _DONE:
                return
            index = free.pop(0)
            in_flight[workers[index].run.remote(shipped, unit)] = (index, place, unit)
            handed_out = place + 1

    try:
        fill()
        while in_flight:
            [ready], _ = ray.wait(list(in_flight), num_returns=1)
            index, _, unit = in_flight.pop(ready)
            try:
                result = _result(ray, ready)
            except BaseException:
                release_workers()  # the next job starts workers afresh rather than reuse ones that failed
                raise
            free.append(index)
            fill()
            yield unit, result
    finally:
        for ref in in_flight:  # a job stopped early (an error, a caller that stopped reading) leaves none running
            with contextlib.suppress(Exception):  # its worker may be gone already
                ray.cancel(ref)


def _result(ray: Any, ref: Any) -> Any:
    """The unit's result; an error the job raised comes back as itself (a one-line InputError stays one)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        cause = error.as_instanceof_cause()
        original = getattr(error, "cause", None)
        raise (original if isinstance(original, Exception) else cause) from None


_DONE = object()
