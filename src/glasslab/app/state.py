"""The loaded model and the one worker thread that runs every piece of work on it.

Calls in different threads keep their interventions apart (see ``model/session.py``), but running all model
work on one thread, one piece at a time, also keeps the requests from competing for the cores and memory,
serves them first come first served, and keeps each job's cancel check and progress count to its own
passes. Switching models loads the new one off the worker (the old one keeps answering) and swaps it in as
one more piece of work, so no request ever sees half of each.
"""

from __future__ import annotations

import contextlib
import copy
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedTokenizerBase

from ..errors import GlasslabError
from ..model.model import Model
from ..model.run import Run
from ..model.session import local_hooks


class Busy(GlasslabError):
    """The model stayed busy longer than a request is willing to wait."""


class Cancelled(GlasslabError):
    """A job was cancelled while it ran; raised inside the model's forward pass to stop it."""


@dataclass
class Loaded:
    model: Model
    source: str  # what it was loaded from, as the client named it ("default", a hub id, a path)
    generation: int  # bumps on every switch; keys the caches
    tokenizer: PreTrainedTokenizerBase | None = None  # a private copy: tokenizing never waits for the model

    def __post_init__(self) -> None:
        if self.tokenizer is None:
            self.tokenizer = copy.deepcopy(self.model.tokenizer)


@dataclass
class _Work:
    what: str
    fn: Callable[[Model], Any]
    started: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    abandoned: bool = False  # its caller gave up before it started


class ModelState:
    """The current model, the one worker thread that runs all model work in arrival order (FIFO), and small
    caches of the last forward passes and results.

    One thread, not a lock shared by many: requests are served in the order they came, so none starves
    behind luckier ones, and tensors are allocated by one thread only, which keeps the allocator's memory
    from spreading over one arena per request thread.
    """

    def __init__(
        self, model: Model, source: str, *, wait_s: float = 300.0, cached_runs: int = 2, cached_results: int = 64
    ):
        self.tokenizer_lock = threading.Lock()  # for the copy: fast tokenizers refuse concurrent use
        self.wait_s = wait_s
        self.loaded = Loaded(model, source, 0)
        self.holder = ""  # what the worker runs now (for the busy message)
        self._queue: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._abandon = threading.Lock()
        self._runs: OrderedDict[tuple, Run] = OrderedDict()
        self._results: OrderedDict[tuple, dict] = OrderedDict()
        self._max_runs, self._max_results = cached_runs, cached_results
        self._cache_lock = threading.Lock()
        threading.Thread(target=self._worker, name="glasslab-model", daemon=True).start()

    @property
    def model(self) -> Model:
        return self.loaded.model

    def _worker(self) -> None:
        while True:
            work = self._queue.get()
            with self._abandon:
                if work.abandoned:
                    continue
                work.started.set()
            self.holder = work.what
            try:
                work.result = work.fn(self.loaded.model)
            except BaseException as exc:  # handed to the caller, raised in its thread
                work.error = exc
            finally:
                self.holder = ""
                work.done.set()

    def run(self, what: str, fn: Callable[[Model], Any], *, cancel: threading.Event | None = None) -> Any:
        """``fn(model)`` on the model worker, after the work queued before it. A request waits at most
        ``wait_s`` for its turn (then ``Busy``); a job (``cancel`` given) waits until its turn or its cancel."""
        work = _Work(what, fn)
        self._queue.put(work)
        deadline = time.monotonic() + self.wait_s
        while not work.started.wait(0.1):
            cancelled = cancel is not None and cancel.is_set()
            if cancelled or (cancel is None and time.monotonic() > deadline):
                with self._abandon:
                    if not work.started.is_set():
                        work.abandoned = True
                        if cancelled:
                            raise Cancelled("the job was cancelled before it started")
                        raise Busy(f"the model is busy with {self.holder or 'other work'}; try again in a moment")
        work.done.wait()
        if work.error is not None:
            raise work.error
        return work.result

    @contextlib.contextmanager
    def hold(self, what: str) -> Iterator[Model]:
        """Keep the worker busy with ``what`` for the ``with`` block (tests; maintenance)."""
        release = threading.Event()
        work = _Work(what, lambda _model: release.wait())
        self._queue.put(work)
        work.started.wait()
        try:
            yield self.loaded.model
        finally:
            release.set()
            work.done.wait()

    def swap(self, model: Model, source: str, cancel: threading.Event | None = None) -> None:
        """Make ``model`` the current one, in turn with the work queued before (none sees half of each)."""

        def switch(_old: Model) -> None:
            self.loaded = Loaded(model, source, self.loaded.generation + 1)
            with self._cache_lock:
                self._runs.clear()
                self._results.clear()

        self.run("switching model", switch, cancel=cancel or threading.Event())

    # -- caches (called on the worker) --------------------------------------------------------------------
    def cached_run(self, key: tuple, make: Callable[[], Run]) -> Run:
        """The run stored under ``key`` for the current model, else ``make()`` (kept, oldest dropped)."""
        full = (self.loaded.generation, *key)
        with self._cache_lock:
            if full in self._runs:
                self._runs.move_to_end(full)
                return self._runs[full]
        run = make()
        with self._cache_lock:
            self._runs[full] = run
            while len(self._runs) > self._max_runs:
                self._runs.popitem(last=False)
        return run

    def peek_run(self, key: tuple) -> Run | None:
        """The run stored under ``key`` for the current model, if any (nothing is computed)."""
        with self._cache_lock:
            return self._runs.get((self.loaded.generation, *key))

    def result(self, key: tuple) -> dict | None:
        with self._cache_lock:
            full = (self.loaded.generation, *key)
            if full in self._results:
                self._results.move_to_end(full)
                return self._results[full]
        return None

    def keep_result(self, key: tuple, value: dict) -> None:
        with self._cache_lock:
            self._results[(self.loaded.generation, *key)] = value
            while len(self._results) > self._max_results:
                self._results.popitem(last=False)


@contextlib.contextmanager
def cancellable(model: Model, cancel: threading.Event, tick: Callable[[], None] | None = None) -> Iterator[None]:
    """Stop the model's forward passes once ``cancel`` is set: a pre-hook on every block raises ``Cancelled``
    (and calls ``tick``, so a job can count the blocks it has run as progress).

    The exception unwinds through the method like any error, so scoped interventions close as usual; the
    hooks are removed on the way out, leaving the model's modules exactly as they were.
    """

    def check(_module, _args):
        if cancel.is_set():
            raise Cancelled("the job was cancelled")
        if tick is not None:
            tick()

    with local_hooks(model.blocks, "pre", check):  # another thread's passes are not this job's to stop
        yield
