"""Long work as background jobs: an id, a status, progress, a result or an error, and cancel.

Each job runs in its own thread but model work still goes through ``ModelState.use``, so jobs and plain
requests take turns on the model. Cancelling sets an event: a job waiting for the model gives up, a running
one is stopped at its next transformer block (``state.cancellable``), and a model load is discarded when it
returns. Errors become the job's one-line ``error``; the model is left as it was because interventions are
scoped and the cancel hooks are removed on the way out.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ..errors import GlasslabError
from .security import without_paths
from .state import Cancelled

Status = Literal["queued", "running", "done", "failed", "cancelled"]


class TooManyJobs(GlasslabError):
    """More unfinished jobs than the server keeps."""


@dataclass
class Job:
    id: str
    kind: str
    params: dict
    status: Status = "queued"
    stage: str = "queued"
    done: int = 0  # units of work done (e.g. transformer blocks run), with `total` when it is known
    total: int | None = None
    metrics: dict | None = None  # live figures of the work so far (e.g. an SAE training's FVE)
    result: dict | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    committed: bool = False  # past the point where cancelling could still undo its work
    _commit_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def report(
        self, stage: str | None = None, done: int | None = None, total: int | None = None, metrics: dict | None = None
    ) -> None:
        """Progress from inside the job (any argument left out stays as it was)."""
        if stage is not None:
            self.stage = stage
        if done is not None:
            self.done = done
        if total is not None:
            self.total = total
        if metrics is not None:
            self.metrics = metrics

    def commit(self) -> bool:
        """Pass the point of no return (e.g. before moving a finished artifact into place): False if the job
        was cancelled first; once committed, a cancel is refused, so a cancelled job never leaves its work."""
        with self._commit_lock:
            if self.cancel.is_set():
                return False
            self.committed = True
            return True

    def request_cancel(self) -> None:
        with self._commit_lock:
            if not self.committed:
                self.cancel.set()

    def to_dict(self, *, with_result: bool = True) -> dict:
        now = time.time()
        return {
            "kind": "job",
            "id": self.id,
            "job_kind": self.kind,
            "params": self.params,
            "status": self.status,
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "fraction": min(1.0, self.done / self.total) if self.total else None,
            "metrics": self.metrics,
            "elapsed_s": round((self.finished or now) - (self.started or now), 3),
            "error": self.error,
            "result": self.result if with_result else None,
        }


class JobManager:
    """Starts, tracks and cancels jobs; keeps the last ``keep`` finished ones for their results."""

    def __init__(self, *, max_active: int = 8, keep: int = 50):
        self.max_active, self.keep = max_active, keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def submit(self, kind: str, params: dict, work: Callable[[Job], dict]) -> Job:
        with self._lock:
            active = sum(j.status in ("queued", "running") for j in self._jobs.values())
            if active >= self.max_active:
                raise TooManyJobs(f"{active} jobs are already queued or running; wait for one or cancel one")
            job = Job(uuid.uuid4().hex[:12], kind, params)
            self._jobs[job.id] = job
            self._forget_old()
        threading.Thread(target=self._run, args=(job, work), name=f"glasslab-job-{job.id}", daemon=True).start()
        return job

    def _run(self, job: Job, work: Callable[[Job], dict]) -> None:
        job.status, job.started = "running", time.time()
        try:
            result = work(job)
            if job.cancel.is_set():
                raise Cancelled("the job was cancelled")
            job.result, job.status, job.stage = result, "done", "done"
        except Cancelled:
            job.status, job.stage = "cancelled", "cancelled"
        except GlasslabError as exc:
            job.status, job.stage, job.error = "failed", "failed", without_paths(str(exc))
        except Exception as exc:  # a bug: report it on the job instead of killing the thread silently
            message = without_paths(f"internal error: {type(exc).__name__}: {exc}")
            job.status, job.stage, job.error = "failed", "failed", message
        finally:
            job.finished = time.time()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is not None and job.status in ("queued", "running"):
            job.request_cancel()
        return job

    def _forget_old(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.status not in ("queued", "running")]
        for job_id in finished[: max(0, len(finished) - self.keep)]:
            del self._jobs[job_id]
