"""The benchmark queue: jobs run one at a time (runs must not skew each other) on a background thread."""

from __future__ import annotations

import itertools
import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from models.bench.events import (BenchEvent, Failure, Log, Memory, Progress, Result, Sample, Started,
                                 TypedEvent)
from models.bench.spec import BenchJob, BenchResult
from models.errors import BenchmarkError
from models.text import plural

log = logging.getLogger(__name__)


class BenchState(str, Enum):
    """Where a queued benchmark is; a str, so "done" == BenchState.DONE for callers that hold plain words."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (BenchState.DONE, BenchState.FAILED, BenchState.CANCELLED)

    def __str__(self) -> str:
        return self.value


class Change(str, Enum):
    """What a listener is told about an item."""

    ADDED = "added"
    UPDATED = "updated"  # state, progress, memory, log or failure changed
    SAMPLE = "sample"  # one timed repetition (the event is the Sample)
    RESULT = "result"  # one test's row arrived (the event is the Result)
    FINISHED = "finished"  # the item reached its final state
    REMOVED = "removed"  # taken off the list


_ids = itertools.count(1)


@dataclass(eq=False)
class BenchItem:
    """One job in the queue and everything heard about it; changed only by its BenchQueue."""

    job: BenchJob
    state: BenchState = BenchState.QUEUED
    fraction: float = 0.0
    phase: str = ""  # the wire phase ("load", "rep", ...); "starting" before the worker speaks
    test: str = ""
    progress: str = ""  # what a person reads: "pp512 rep 1/5" (models.bench.events.progress_text)
    message: str = ""  # why it failed, in one line
    detail: str = ""  # the worker's traceback or llama.cpp's log tail
    log_tail: list[str] = field(default_factory=list)
    results: list[BenchResult] = field(default_factory=list)
    memory: dict[str, int] = field(default_factory=dict)
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def model_name(self) -> str:
        return Path(self.job.model_path).name

    @property
    def settings(self) -> str:
        p = self.job.params
        tests = ", ".join(t.name for t in self.job.tests)
        # The parameters first: in a sweep they are what tells two runs apart; the tests are the same.
        return (f"{plural(p.n_threads, 'thread')} · ngl {p.n_gpu_layers} · batch {p.n_batch}/{p.n_ubatch} "
                f"· fa {p.flash_attn}"
                f" · KV {p.type_k}/{p.type_v} · ×{self.job.repetitions} · {tests}"
                + (f" · RPC {p.rpc}" if p.rpc else ""))  # a pool's run and this PC's look alike otherwise

    def apply(self, event: TypedEvent) -> None:
        """Take in one worker event (the queue calls this on its thread, in the order the worker sent them)."""
        if isinstance(event, Progress):
            self.fraction, self.phase, self.progress = float(event.fraction), event.phase, event.text
            self.test = event.test or self.test
        elif isinstance(event, Started):
            self.phase, self.progress = "started", "starting the worker"
        elif isinstance(event, Memory):
            self.memory = {"rss_anon": event.rss_anon, "rss_file": event.rss_file, "peak": event.peak,
                           "rss": event.rss}
        elif isinstance(event, Log):
            self.log_tail = (self.log_tail + [event.message.rstrip()])[-40:]
        elif isinstance(event, Result):
            self.results = [*self.results, event.bench_result]
        elif isinstance(event, Failure):
            self.message = event.message or "The benchmark failed."
            self.detail = "\n".join(filter(None, [event.detail, *map(str, event.log_tail)]))


class Runner(Protocol):
    """What the queue needs of models.bench.runner.BenchRunner (a test may pass another real runner)."""

    on_event: Callable[[BenchJob, BenchEvent], None] | None

    def run(self, jobs: list[BenchJob]) -> list[BenchResult]: ...

    def cancel(self) -> None: ...


def default_runner() -> Runner:
    from models.bench.runner import BenchRunner  # the engine loads on first use: startup must not pay for it

    return BenchRunner()


Listener = Callable[[Change, BenchItem, TypedEvent | None], None]
# Stores each result as it arrives: (record(job, event), close()); made on the queue's thread (SQLite is per thread).
RecorderFactory = Callable[[], tuple[Callable[[BenchJob, BenchEvent], None], Callable[[], None]]]


class BenchQueue:
    """Runs queued jobs one after another; cancel stops the running one only; every change goes to `listener`."""

    def __init__(self, *, listener: Listener | None = None, runner_factory: Callable[[], Runner] = default_runner,
                 recorder: RecorderFactory | None = None) -> None:
        self._listener = listener
        self._runner_factory = runner_factory
        self._recorder = recorder
        self._items: list[BenchItem] = []
        self._cond = threading.Condition()
        self._current: BenchItem | None = None
        self._runner: Runner | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- what callers read --
    @property
    def items(self) -> list[BenchItem]:
        with self._cond:
            return list(self._items)

    @property
    def running(self) -> BenchItem | None:
        return self._current

    def pending(self) -> int:
        """Items queued or running."""
        return sum(1 for item in self.items if not item.state.finished)

    def queued(self) -> int:
        return sum(1 for item in self.items if item.state == BenchState.QUEUED)

    # -- what callers do --
    def enqueue(self, jobs: list[BenchJob]) -> list[BenchItem]:
        new = [BenchItem(job=job) for job in jobs]
        with self._cond:
            if self._closed:
                raise BenchmarkError("The benchmark queue is closed; nothing more can be queued.")
            self._items.extend(new)
        for item in new:
            self._tell(Change.ADDED, item)
        with self._cond:
            if self._thread is None:  # started on first use: an app that never benchmarks has no idle thread
                self._thread = threading.Thread(target=self._work, name="tokenometer-bench", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return new

    def cancel(self, item: BenchItem) -> None:
        """Stop the running item, or mark a queued one cancelled; a finished one is left as it is."""
        with self._cond:
            if item.state == BenchState.QUEUED:
                item.state, item.message = BenchState.CANCELLED, "Cancelled before it started."
                change = Change.FINISHED
            elif item.state == BenchState.RUNNING and item is self._current:
                item.message = "Cancelling …"
                change = Change.UPDATED
                if self._runner is not None:
                    self._runner.cancel()  # thread-safe; the run returns with cancelled rows
            else:
                return
        self._tell(change, item)

    def cancel_running(self) -> BenchItem | None:
        """Cancel the running item only; the queued ones still run after it."""
        current = self._current
        if current is not None:
            self.cancel(current)
        return current

    def remove(self, item: BenchItem) -> None:
        """Take a queued or finished item off the list; a running one must be cancelled first."""
        with self._cond:
            if item.state == BenchState.RUNNING:
                raise BenchmarkError(f"{item.model_name} is running: cancel it first, then remove it.")
            if item not in self._items:
                return
            self._items.remove(item)
            if item.state == BenchState.QUEUED:
                item.state, item.message = BenchState.CANCELLED, "Removed before it started."
        self._tell(Change.REMOVED, item)

    def clear_queue(self) -> list[BenchItem]:
        """Remove every item still waiting; the running one goes on. Returns what was removed."""
        return self._remove_where(lambda item: item.state == BenchState.QUEUED)

    def clear_finished(self) -> list[BenchItem]:
        """Remove every done, failed or cancelled item from the list (their results stay stored)."""
        return self._remove_where(lambda item: item.state.finished)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: all(i.state.finished for i in self._items), timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what runs, drop what waits, and wait for the worker so no child process outlives the caller."""
        with self._cond:
            self._closed = True
            for item in self._items:
                if item.state == BenchState.QUEUED:
                    item.state, item.message = BenchState.CANCELLED, "Cancelled: the app closed."
            if self._runner is not None:
                self._runner.cancel()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # -- inside --
    def _remove_where(self, predicate: Callable[[BenchItem], bool]) -> list[BenchItem]:
        with self._cond:
            gone = [item for item in self._items if predicate(item)]
            self._items = [item for item in self._items if item not in gone]
            for item in gone:
                if item.state == BenchState.QUEUED:
                    item.state, item.message = BenchState.CANCELLED, "Removed before it started."
        for item in gone:
            self._tell(Change.REMOVED, item)
        return gone

    def _tell(self, change: Change, item: BenchItem, event: TypedEvent | None = None) -> None:
        if self._listener is None:
            return
        try:
            self._listener(change, item, event)
        except Exception:  # a broken listener must not kill the queue
            log.exception("benchmark queue listener failed on %s", change.value)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or any(i.state == BenchState.QUEUED for i in self._items))
                if self._closed:
                    return
                item = next(i for i in self._items if i.state == BenchState.QUEUED)
                item.state, item.phase, item.progress = BenchState.RUNNING, "starting", "starting"
                self._current = item
                # Made before the run, under the lock, so a cancel pressed right now reaches it.
                self._runner = self._runner_factory()
                runner = self._runner
            self._tell(Change.UPDATED, item)
            try:
                results: list[BenchResult] = self._run(item, runner)
                error: BaseException | None = None
            except Exception as caught:  # noqa: BLE001 - the runner's own failure is the item's, said in full
                results, error = [], caught
            with self._cond:
                self._settle(item, results, error)
                self._current, self._runner = None, None
                self._cond.notify_all()
            self._tell(Change.FINISHED, item)

    def _run(self, item: BenchItem, runner: Runner) -> list[BenchResult]:
        record, close = self._recorder() if self._recorder is not None else (None, lambda: None)

        def on_event(job: BenchJob, event: BenchEvent) -> None:
            if event.kind == "log" and event.data.get("level") == "debug":
                return  # llama.cpp logs hundreds of these at load; nobody reads them in a queue
            if record is not None:
                try:
                    record(job, event)
                except Exception as error:  # noqa: BLE001 - a result not saved is said, not fatal
                    log.exception("could not save a result")
                    self._deliver(item, Log(level="error", message=f"Result not saved: {error}"))
            self._deliver(item, event.typed)

        runner.on_event = on_event
        try:
            return list(runner.run([item.job]))
        finally:
            close()

    def _deliver(self, item: BenchItem, event: TypedEvent) -> None:
        item.apply(event)
        change = {Sample: Change.SAMPLE, Result: Change.RESULT}.get(type(event), Change.UPDATED)
        self._tell(change, item, event)

    @staticmethod
    def _settle(item: BenchItem, results: list[BenchResult], error: BaseException | None) -> None:
        if error is not None:
            item.state = BenchState.FAILED
            item.message = str(error) or type(error).__name__
            item.detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            log.warning("benchmark of %s failed: %s", item.model_name, item.message)
            return
        if results and not item.results:
            item.results = list(results)
        statuses = {result.status for result in item.results}
        if item.message.startswith("Cancelling") or (statuses and statuses <= {"cancelled"}):
            item.state, item.message = BenchState.CANCELLED, "Cancelled."
        elif item.job.method != "tests" and not item.message:
            # A batched sweep or load test reports rows or levels, not llama-bench results: ending without a
            # failure is done.
            item.state, item.fraction, item.progress = BenchState.DONE, 1.0, "done"
        elif not item.results or "failed" in statuses or item.message:
            item.state = BenchState.FAILED
            errors = [r.error for r in item.results if r.error]
            item.message = item.message or (errors[0] if errors else "The benchmark failed with no result.")
        else:
            item.state, item.fraction, item.progress = BenchState.DONE, 1.0, "done"
