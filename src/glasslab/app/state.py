"""The loaded model and the one lock that serialises every piece of work on it.

Interventions live on the Model while a ``with model.intervene(...)`` scope is open, so two requests
touching the model at once could see each other's edits; holding ``ModelState.lock`` for the whole of a
request (or job) makes that impossible. Switching models loads the new one without the lock (the old one
keeps answering) and swaps it in under the lock, so no request ever sees half of each.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from ..errors import GlasslabError
from ..model.model import Model
from ..model.run import Run


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


class ModelState:
    """The current model, its lock, and small caches of the last forward passes and results."""

    def __init__(
        self, model: Model, source: str, *, wait_s: float = 60.0, cached_runs: int = 2, cached_results: int = 64
    ):
        self.lock = threading.Lock()
        self.tokenizer_lock = threading.Lock()  # for the copy: fast tokenizers refuse concurrent use
        self.wait_s = wait_s
        self.loaded = Loaded(model, source, 0)
        self.holder = ""  # what holds the lock now (for the busy message)
        self._runs: OrderedDict[tuple, Run] = OrderedDict()
        self._results: OrderedDict[tuple, dict] = OrderedDict()
        self._max_runs, self._max_results = cached_runs, cached_results
        self._cache_lock = threading.Lock()

    @property
    def model(self) -> Model:
        return self.loaded.model

    @contextlib.contextmanager
    def use(self, what: str, *, cancel: threading.Event | None = None) -> Iterator[Model]:
        """Hold the model for ``what``; wait at most ``wait_s`` (or until ``cancel`` is set, for a job)."""
        deadline = time.monotonic() + self.wait_s
        while not self.lock.acquire(timeout=0.1):
            if cancel is not None and cancel.is_set():
                raise Cancelled("the job was cancelled before it started")
            if cancel is None and time.monotonic() > deadline:
                raise Busy(f"the model is busy with {self.holder or 'another request'}; try again in a moment")
        self.holder = what
        try:
            yield self.loaded.model
        finally:
            self.holder = ""
            self.lock.release()

    def swap(self, model: Model, source: str) -> None:
        """Make ``model`` the current one (waits for the work in progress to finish)."""
        with self.lock:
            self.loaded = Loaded(model, source, self.loaded.generation + 1)
            with self._cache_lock:
                self._runs.clear()
                self._results.clear()

    # -- caches (called with the lock held) --------------------------------------------------------------------
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

    handles = [block.register_forward_pre_hook(check) for block in model.blocks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
