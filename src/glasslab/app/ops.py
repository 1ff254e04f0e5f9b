"""Operations: each API method once, callable as a plain request (``POST /api/<name>``) or as a job.

An operation takes the validated body and the model (held under the model lock) and returns its
result's ``to_dict()``. ``execute`` adds what every operation shares: the result cache, the lock, the
cancel hooks for jobs, the prompt-length check in tokens and JSON-safe floats.

A cached result is keyed on the body and on the files of every saved artifact it read (``Operation.reads``):
a steering vector or SAE saved again under the same name, or deleted, by the server, the CLI or Python, gives
a new key, so a stale result is never served.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request

from ..errors import InputError
from ..model.model import Model
from ..operations.options import MAX_PROMPT_TOKENS
from ..operations.options import Options as Body
from ..operations.spec import OperationSpec
from .jobs import Job, JobManager
from .state import ModelState, cancellable

if TYPE_CHECKING:
    from ..cluster import ClusterSpec


class NotFound(InputError):
    """A named artifact (steering vector, SAE) that does not exist for the loaded model: answered with 404."""


def stamp(path: Path) -> tuple:
    """What identifies the file at ``path``, or each file in the folder ``path``, as it is now: name, inode,
    modification time and size. Saves replace files (a new inode) and deletes remove them, so any change gives
    a new stamp; cheap enough (a few ``stat`` calls) to take on every request."""
    try:
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        return tuple((p.name, s.st_ino, s.st_mtime_ns, s.st_size) for p in files for s in [p.stat()])
    except OSError:  # missing, or removed while we looked
        return ("missing",)


@dataclass(frozen=True)
class Limits:
    """Limits that depend on the model or the machine (fixed ones live in schemas.py)."""

    max_prompt_tokens: int = MAX_PROMPT_TOKENS
    max_lens_positions: int = 64  # logit-lens positions per call: each decodes the full vocabulary per layer


@dataclass
class Services:
    """Everything a route needs, kept on ``app.state.glasslab``."""

    state: ModelState
    jobs: JobManager
    limits: Limits
    model_roots: list[Path]  # local folders a client may load models from (resolved)
    experiments: object  # experiments.ExperimentStore (typed loosely to keep imports one-way)
    cache_results: bool = True
    sae_training: dict = field(default_factory=dict)  # the sizes the workbench offers for training an SAE
    extras: dict = field(default_factory=dict)
    # The Ray cluster the operator started the server with (``glasslab serve --cluster``): a request may ask
    # to use it, never name another. Connected to only when a job runs on it.
    cluster: ClusterSpec | None = None


def services(request: Request) -> Services:
    return request.app.state.glasslab


@dataclass
class Ctx:
    state: ModelState
    model: Model
    limits: Limits
    job: Job | None = None
    cluster: ClusterSpec | None = None  # the server's Ray cluster, if it was started with one

    def prompt(self, text: str, what: str = "prompt") -> int:
        """The prompt's length in tokens (BOS included), refusing one over the server's limit."""
        n = int(self.model.tokenize(text).attention_mask.sum())
        if n > self.limits.max_prompt_tokens:
            raise InputError(
                f"{what} is {n} tokens; this server accepts at most {self.limits.max_prompt_tokens}: shorten it"
            )
        return n

    def layer(self, value: int | None, what: str = "layer") -> int | None:
        if value is not None and not 0 <= value < self.model.n_layers:
            raise InputError(f"{what} must be in 0..{self.model.n_layers - 1} for {self.model.name}, got {value}")
        return value

    def head(self, value: int | None, what: str = "head") -> int | None:
        if value is not None and not 0 <= value < self.model.n_heads:
            raise InputError(f"{what} must be in 0..{self.model.n_heads - 1} for {self.model.name}, got {value}")
        return value

    def heads(self, pairs: Sequence[tuple[int, int]], what: str = "heads") -> list[tuple[int, int]]:
        for layer, head in pairs:
            self.layer(layer, f"{what}: layer")
            self.head(head, f"{what}: head")
        return [tuple(p) for p in pairs]

    def neurons(self, pairs: Sequence[tuple[int, int]], what: str = "neurons") -> list[tuple[int, int]]:
        for layer, neuron in pairs:
            self.layer(layer, f"{what}: layer")
            if not 0 <= neuron < self.model.d_mlp:
                raise InputError(f"{what}: neuron must be in 0..{self.model.d_mlp - 1}, got {neuron}")
        return [tuple(p) for p in pairs]


@dataclass(frozen=True)
class Operation:
    name: str  # URL segment (/api/<name>) and job kind
    schema: type[Body]
    run: Callable[[Ctx, Body], dict]
    summary: str
    tag: str
    long: bool = False  # may take many seconds: the front-end should run it as a job
    deterministic: Callable[[Body], bool] = lambda body: True  # False: never served from the cache
    tokenizer_only: Callable[[ModelState, Limits, Body], dict] | None = None  # answers without the model lock
    # Runs in the caller's thread (the request's or the job's), sending only its forward passes to the model
    # worker, one at a time, so other requests are served in between (SAE training: minutes of work).
    off_worker: bool = False
    job_only: bool = False  # offered only through POST /api/jobs (minutes of work: no plain request)
    # Checks a job's body against the model when the job is submitted (a 400 then, not a failed job later).
    precheck: Callable[[Ctx, Body], object] | None = None
    # The stamp (see ``stamp``) of the saved artifacts the body reads: part of the result's cache key.
    reads: Callable[[ModelState, Body], tuple] | None = None


def declared(spec: OperationSpec, run: Callable[[Ctx, Body], dict] | None = None, **server: Any) -> Operation:
    """The endpoint of a declared operation: its body is the declared options. ``run`` is the server's own way
    to answer (a shared forward pass, its limits, defaults for a first click); without it the declared function
    runs as is."""

    def call(ctx: Ctx, body: Body) -> dict:
        return spec(ctx.model, body).to_dict()

    return Operation(spec.name, spec.http_options, run or call, spec.summary, spec.group, long=spec.long, **server)


def execute(services: Services, op: Operation, body: Body, job: Job | None = None) -> dict:
    """Run ``op`` on the current model, serialised with every other piece of model work."""
    state = services.state
    use_cache = services.cache_results and op.deterministic(body)
    reads = op.reads(state, body) if use_cache and op.reads is not None else ()
    key = (op.name, body.model_dump_json(), reads)
    if use_cache and (hit := state.result(key)) is not None:
        return hit
    if op.tokenizer_only is not None:
        return op.tokenizer_only(state, services.limits, body)
    if op.off_worker:
        return finite(op.run(Ctx(state, state.model, services.limits, job, services.cluster), body))
    cancel = job.cancel if job is not None else None

    def tick() -> None:
        if job is not None:
            job.done += 1

    def work(model: Model) -> dict:
        ctx = Ctx(state, model, services.limits, job, services.cluster)
        if job is None:
            return finite(op.run(ctx, body))
        job.report(stage="running")
        with cancellable(model, job.cancel, tick):
            return finite(op.run(ctx, body))

    result = state.run(op.name, work, cancel=cancel)
    if use_cache:
        state.keep_result(key, result)
    return result


def finite(value):
    """The JSON value with NaN and infinities as null (JSON has no such numbers; browsers reject them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    return json.loads(json.dumps(value, default=str))
