"""The benchmark queue for the GUI: the core's BenchQueue (models.bench.queue), its changes as Qt signals."""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal, Slot

from models.bench.events import Batched, LoadLevel, Result, Sample, TypedEvent
from models.bench.queue import BenchItem, BenchState, Change, RecorderFactory, Runner, default_runner
from models.bench.queue import BenchQueue as CoreQueue
from models.bench.spec import BenchJob

log = logging.getLogger(__name__)

QueueItem = BenchItem
QUEUED, RUNNING, DONE, FAILED, CANCELLED = (BenchState.QUEUED, BenchState.RUNNING, BenchState.DONE,
                                            BenchState.FAILED, BenchState.CANCELLED)


class BenchQueue(QObject):
    """Holds the app's one queue and re-emits its changes as signals on the GUI thread."""

    added = Signal(object)  # BenchItem
    changed = Signal(object)  # BenchItem
    removed = Signal(object)  # BenchItem, taken off the list
    sample = Signal(object, str, int, float)  # item, test, repetition (from 1), tokens/s
    finished = Signal(object)  # BenchItem, in its final state
    result = Signal(object)  # BenchResult (each test's, ok or not)
    measured = Signal(object, object)  # BenchItem, a Batched row or LoadLevel of a batched sweep or load test
    _relay = Signal(object, object, object)  # the core's (change, item, event), from whichever thread told it

    def __init__(self, parent: QObject | None = None, *, runner_factory: Callable[[], Runner] = default_runner,
                 recorder: RecorderFactory | None = None) -> None:
        super().__init__(parent)
        # The core tells from its own thread; the relay hops to this object's (the GUI's) thread, so every
        # public signal is emitted there and plain callables connected to them run there too.
        self._relay.connect(self._heard)
        self.core = CoreQueue(listener=self._relay.emit, runner_factory=runner_factory, recorder=recorder)

    @Slot(object, object, object)
    def _heard(self, change: Change, item: BenchItem, event: TypedEvent | None) -> None:
        if change == Change.ADDED:
            self.added.emit(item)
        elif change == Change.REMOVED:
            self.removed.emit(item)
        elif change == Change.SAMPLE and isinstance(event, Sample):
            # Repetitions count from 1 for people; the wire counts from 0.
            self.sample.emit(item, event.test, event.rep + 1, float(event.ts))
        elif change == Change.RESULT and isinstance(event, Result):
            self.changed.emit(item)
            self.result.emit(event.bench_result)
        elif isinstance(event, (Batched, LoadLevel)):
            self.changed.emit(item)
            self.measured.emit(item, event)
        elif change == Change.FINISHED:
            self.changed.emit(item)
            self.finished.emit(item)
        else:
            self.changed.emit(item)

    # -- the core's interface, as the pages use it --
    @property
    def items(self) -> list[BenchItem]:
        return self.core.items

    @property
    def running(self) -> BenchItem | None:
        return self.core.running

    def pending(self) -> int:
        return self.core.pending()

    def queued(self) -> int:
        return self.core.queued()

    def enqueue(self, jobs: list[BenchJob]) -> list[BenchItem]:
        return self.core.enqueue(jobs)

    def cancel(self, item: BenchItem | None = None) -> None:
        """Cancel one item, or with none given the running one only (what waits still runs)."""
        if item is None:
            self.core.cancel_running()
        else:
            self.core.cancel(item)

    def remove(self, item: BenchItem) -> None:
        self.core.remove(item)

    def clear_queue(self) -> list[BenchItem]:
        return self.core.clear_queue()

    def clear_finished(self) -> list[BenchItem]:
        return self.core.clear_finished()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel and wait for the worker so no child process outlives the app."""
        self.core.close(timeout)


__all__ = ["BenchQueue", "QueueItem", "QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED"]
