"""Run a job's units in this process or on Ray actors, with one progress bar for all of them.

On Ray each worker is an actor that loads the model once (``ModelRecipe``) and runs units as they are
handed to it, two at a time so it never waits for the driver. The workers outlive one job: the next job on
the same model (in the same Ray session) reuses them instead of starting processes and loading the model
again; a job on another model replaces them, and ``release_workers`` hands their resources back. Actors are
restartable and their calls retried (``max_restarts``/``max_task_retries``): a worker killed mid-unit is
started again and the unit run again, so every unit is done once. Units must therefore be idempotent (a
harvest shard is written under its own name, atomically). An error a unit raises itself stops the job.
"""

from __future__ import annotations

import contextlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
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


_pool: dict[tuple, list[Any]] = {}  # the live workers, by (Ray session, model recipe, resources, count)


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
        _pool[key] = [actor(_Worker).remote(recipe) for _ in range(count)]
    return _pool[key]


def release_workers() -> None:
    """Stop the workers kept for the next job, giving their CPUs and GPUs back to the cluster (a job that
    needs them, such as a data-parallel training, calls this first: kept workers would hold them forever)."""
    if not _pool:
        return
    ray = ray_module()
    current = _session(ray) if ray.is_initialized() else None
    for key in list(_pool):
        stale = _pool.pop(key)
        if key[0] == current:
            for worker in stale:
                ray.kill(worker)


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
) -> Iterator[tuple[Unit, Result]]:
    """``(unit, result)`` pairs as units finish (in order locally; in completion order on Ray)."""
    bar = tqdm(total=total, desc=description, unit=unit_name, disable=not progress_enabled(), file=sys.stderr)
    try:
        pairs = _on_ray(job, units, model, spec) if spec.distributed else ((u, job.run(model, u)) for u in units)
        for unit, result in pairs:
            bar.update(weight(unit))
            yield unit, result
    finally:
        bar.close()


def _on_ray(job: UnitJob, units: Iterable[Any], model: Model | None, spec: ClusterSpec) -> Iterator[tuple[Any, Any]]:
    ray = spec.connect()
    recipe = None if model is None else ModelRecipe.of(model, "cuda" if spec.gpus_per_worker > 0 else "cpu")
    workers = _workers(ray, spec, recipe)
    shipped = ray.put(job)  # once per job, not with every unit: a job may carry a large SAE
    pending = iter(units)
    in_flight: dict[Any, tuple[int, Any]] = {}  # result ref -> (worker index, unit)

    def submit(index: int) -> bool:
        unit = next(pending, _DONE)
        if unit is _DONE:
            return False
        in_flight[workers[index].run.remote(shipped, unit)] = (index, unit)
        return True

    try:
        for index in range(len(workers)):
            for _ in range(_IN_FLIGHT_PER_WORKER):
                submit(index)
        while in_flight:
            [ready], _ = ray.wait(list(in_flight), num_returns=1)
            index, unit = in_flight.pop(ready)
            try:
                result = _result(ray, ready)
            except BaseException:
                release_workers()  # the next job starts workers afresh rather than reuse ones that failed
                raise
            submit(index)
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
