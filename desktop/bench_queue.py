"""The benchmark queue: jobs run one at a time through the core's BenchRunner, reported as Qt signals."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from desktop.jobs import Stream
from models.bench.events import BenchEvent
from models.bench.spec import BenchJob, BenchResult

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


@dataclass(eq=False)
class QueueItem:
    """One job in the queue and everything the GUI has heard about it."""

    job: BenchJob
    state: str = QUEUED
    fraction: float = 0.0
    phase: str = ""
    test: str = ""
    message: str = ""  # why it failed, in one line
    detail: str = ""  # the worker's traceback or llama.cpp's log tail
    log_tail: list[str] = field(default_factory=list)
    results: list[BenchResult] = field(default_factory=list)
    memory: dict[str, int] = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        return Path(self.job.model_path).name

    @property
    def settings(self) -> str:
        p = self.job.params
        tests = ", ".join(t.name for t in self.job.tests)
        # The parameters first: in a sweep they are what tells two runs apart; the tests are the same.
        return (f"{p.n_threads} threads · ngl {p.n_gpu_layers} · batch {p.n_batch}/{p.n_ubatch} · fa {p.flash_attn}"
                f" · KV {p.type_k}/{p.type_v} · ×{self.job.repetitions} · {tests}")


def _default_runner_factory(on_event: Callable[[BenchJob, BenchEvent], None]) -> Any:
    # Imported on first use: the runner module is the engine's, and startup must not pay for it.
    from models.bench.runner import BenchRunner

    return BenchRunner(on_event=on_event)


# A recorder stores each result as it arrives: (record(job, event), close()); made on the runner's thread.
RecorderFactory = Callable[[], tuple[Callable[[BenchJob, BenchEvent], None], Callable[[], None]]]


class BenchQueue(QObject):
    """Holds the queue; starts the next job when one ends; survives page switches."""

    added = Signal(object)  # QueueItem
    changed = Signal(object)  # QueueItem
    sample = Signal(object, str, int, float)  # item, test, repetition, tokens/s
    finished = Signal(object)  # QueueItem, after its last event
    result = Signal(object)  # BenchResult (each test's, ok or not)
    idle = Signal()

    def __init__(self, parent: QObject | None = None, *,
                 runner_factory: Callable[[Callable[[BenchJob, BenchEvent], None]], Any] | None = None,
                 recorder: RecorderFactory | None = None) -> None:
        super().__init__(parent)
        self.items: list[QueueItem] = []
        self._runner_factory = runner_factory or _default_runner_factory
        self._recorder = recorder  # SQLite work happens on the runner's thread, never the GUI's
        self._current: QueueItem | None = None
        self._runner: Any = None
        self._stream: Stream | None = None

    @property
    def running(self) -> QueueItem | None:
        return self._current

    def pending(self) -> int:
        return sum(1 for item in self.items if item.state in (QUEUED, RUNNING))

    def enqueue(self, jobs: list[BenchJob]) -> list[QueueItem]:
        new = [QueueItem(job=job) for job in jobs]
        for item in new:
            self.items.append(item)
            self.added.emit(item)
        self._start_next()
        return new

    def cancel(self, item: QueueItem | None = None) -> None:
        """Cancel one item, or the running one and everything queued."""
        targets = [item] if item is not None else [i for i in self.items if i.state in (QUEUED, RUNNING)]
        for target in targets:
            if target.state == QUEUED:
                target.state = CANCELLED
                target.message = "Cancelled before it started."
                self.changed.emit(target)
            elif target.state == RUNNING and self._runner is not None:
                target.message = "Cancelling …"
                self.changed.emit(target)
                self._runner.cancel()  # thread-safe; the run returns with cancelled results

    def clear_finished(self) -> None:
        self.items = [item for item in self.items if item.state in (QUEUED, RUNNING)]

    def _start_next(self) -> None:
        if self._current is not None:
            return
        item = next((i for i in self.items if i.state == QUEUED), None)
        if item is None:
            self.idle.emit()
            return
        self._current = item
        item.state = RUNNING
        item.phase = "starting"
        self.changed.emit(item)
        # Made here, not on the runner's thread, so a cancel pressed right now reaches it.
        self._runner = self._runner_factory(lambda _job, _event: None)
        stream = Stream(self._work(item, self._runner), name="tokenometer-bench", parent=self)
        stream.event.connect(self._on_event)
        stream.done.connect(lambda results, item=item: self._on_done(item, results))
        stream.failed.connect(lambda error, item=item: self._on_failed(item, error))
        self._stream = stream
        stream.start()

    def _work(self, item: QueueItem, runner: Any) -> Callable[[Callable[..., None]], list[BenchResult]]:
        def work(emit: Callable[..., None]) -> list[BenchResult]:
            record, close = self._recorder() if self._recorder is not None else (None, lambda: None)

            def on_event(job: BenchJob, event: BenchEvent) -> None:
                if event.kind == "log" and event.data.get("level") == "debug":
                    return  # llama.cpp logs hundreds of these at load; crossing threads each would stall the GUI
                if record is not None:
                    try:
                        record(job, event)
                    except Exception as error:  # noqa: BLE001 - a result not saved is said, not fatal
                        log.exception("could not save a result")
                        emit(item, BenchEvent("log", {"level": "error", "message": f"Result not saved: {error}"}))
                emit(item, event)

            runner.on_event = on_event
            try:
                return list(runner.run([item.job]))
            finally:
                close()
        return work

    def _on_event(self, args: tuple[Any, ...]) -> None:
        item, event = args
        data = event.data
        if event.kind == "progress":
            item.fraction = float(data.get("fraction", item.fraction))
            item.phase = str(data.get("phase", ""))
            item.test = str(data.get("test", item.test))
            if data.get("of"):
                item.phase = f"{item.phase} {data.get('rep', 0)}/{data['of']}"
        elif event.kind == "sample":
            # Repetitions count from 1 for people; the worker counts from 0.
            self.sample.emit(item, str(data.get("test", "")), int(data.get("rep", 0)) + 1,
                             float(data.get("ts", 0.0)))
            return
        elif event.kind == "memory":
            item.memory = {key: int(value) for key, value in data.items() if isinstance(value, int)}
        elif event.kind == "log":
            item.log_tail = (item.log_tail + [str(data.get("message", "")).rstrip()])[-40:]
            return
        elif event.kind == "result":
            result = BenchResult.from_json(data.get("result", {}))
            item.results.append(result)
            self.result.emit(result)
        elif event.kind == "failure":
            item.message = str(data.get("message", "The benchmark failed."))
            tail = [str(line) for line in data.get("log_tail", [])]
            item.detail = "\n".join(filter(None, [str(data.get("detail", "")), *tail]))
        self.changed.emit(item)

    def _on_done(self, item: QueueItem, results: list[BenchResult]) -> None:
        if results and not item.results:
            item.results = list(results)
        statuses = {result.status for result in item.results}
        if item.message.startswith("Cancelling") or (statuses and statuses <= {"cancelled"}):
            item.state, item.message = CANCELLED, "Cancelled."
        elif not item.results or "failed" in statuses or item.message:
            item.state = FAILED
            errors = [r.error for r in item.results if r.error]
            item.message = item.message or (errors[0] if errors else "The benchmark failed with no result.")
        else:
            item.state, item.fraction = DONE, 1.0
        self._finish(item)

    def _on_failed(self, item: QueueItem, error: BaseException) -> None:
        # The runner turns worker crashes into failed results; an exception here is the runner's own failure.
        item.state = FAILED
        item.message = str(error) or type(error).__name__
        item.detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        log.warning("benchmark of %s failed: %s", item.model_name, item.message)
        self._finish(item)

    def _finish(self, item: QueueItem) -> None:
        self._current, self._runner, self._stream = None, None, None
        self.changed.emit(item)
        self.finished.emit(item)
        self._start_next()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel and wait for the worker so no child process outlives the app."""
        stream = self._stream
        self.cancel()
        if stream is not None:
            stream.join(timeout)
