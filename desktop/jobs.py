"""Background work in one shape: run a core function off the GUI thread, get success or failure back on it;
a change operation also tells every page that shows the changed data."""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Flag, auto
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from desktop.error_dialog import report_error

log = logging.getLogger(__name__)

T = TypeVar("T")

# Jobs whose signals object must outlive the call until its result is delivered.
_live: set[Job[Any]] = set()


def _unless_gone(handler: Callable[[Any], None]) -> Callable[[Any], None]:
    """The handler, made quiet when the widgets it would update were deleted while the job ran (a page or the
    window closed): nobody is left to show the result, so it is dropped rather than raised in the event loop."""

    def deliver(payload: Any) -> None:
        try:
            handler(payload)
        except RuntimeError as error:
            if "already deleted" not in str(error):
                raise
            log.debug("a job's result arrived after its widgets were deleted: %s", error)

    return deliver


class Job(QObject, Generic[T]):
    """One call of a core function on the thread pool (Anki's QueryOp, in Qt terms).

    Create it on the GUI thread: its signals are then delivered there, whatever thread emits them.
    """

    done = Signal(object)
    failed = Signal(object)

    def __init__(self, fn: Callable[[], T], *, on_done: Callable[[T], None] | None = None,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        super().__init__()
        self._fn = fn
        self.cancelled = False
        if on_done is not None:
            self.done.connect(_unless_gone(on_done))
        # Without a handler a failure is an unhandled error: it goes to the one error dialog.
        self.failed.connect(_unless_gone(on_error) if on_error is not None else report_error)
        self.done.connect(self._release)
        self.failed.connect(self._release)

    def _release(self, _payload: object) -> None:
        _live.discard(self)

    def cancel(self) -> None:
        """Drop the result when it arrives (the call itself cannot be interrupted)."""
        self.cancelled = True
        self.done.disconnect()
        self.failed.disconnect()
        self.done.connect(self._release)
        self.failed.connect(self._release)

    def _run(self) -> None:
        try:
            result = self._fn()
        except BaseException as error:  # noqa: BLE001 - every failure must reach the GUI thread
            self._deliver(self.failed, error)
        else:
            self._deliver(self.done, result)

    def _deliver(self, signal: Any, payload: object) -> None:
        try:
            signal.emit(payload)
        except RuntimeError:  # the app quit while this ran: nobody is left to tell
            log.debug("job finished after its receiver was deleted")


class _Runnable(QRunnable):
    def __init__(self, job: Job[Any]) -> None:
        super().__init__()
        self._job = job

    def run(self) -> None:
        self._job._run()


def run_job(fn: Callable[[], T], *, on_done: Callable[[T], None] | None = None,
            on_error: Callable[[BaseException], None] | None = None) -> Job[T]:
    """Run `fn()` on Qt's thread pool; `on_done(result)` or `on_error(error)` run later on the GUI thread."""
    job: Job[T] = Job(fn, on_done=on_done, on_error=on_error)
    _live.add(job)
    QThreadPool.globalInstance().start(_Runnable(job))
    return job


class Bridge(QObject):
    """Turns a core object's plain callback, called on any thread, into a signal on the GUI thread
    (the download queue's progress: the queue blocks its own thread for minutes, not a pool thread)."""

    arrived = Signal(tuple)  # the callback's arguments

    def __call__(self, *args: Any) -> None:
        self.arrived.emit(args)


# -- change operations (Anki's CollectionOp): the job that changes data says what it changed --

class Change(Flag):
    """What a change operation changed; each page watches the kinds of data it shows."""

    LIBRARY = auto()  # models on disk and the folders scanned for them: Library, Benchmark, Settings
    RESULTS = auto()  # the results store: Results
    NONE = 0


class _Watcher(QObject):
    """A page's subscription: a child of the page, so it goes (and is disconnected) with it."""

    def __init__(self, changes: Change, refresh: Callable[[], None], parent: QObject) -> None:
        super().__init__(parent)
        self._changes = changes
        self._refresh = refresh

    @Slot(object)
    def changed(self, changes: Change) -> None:
        if changes & self._changes:
            self._refresh()


class Notifier(QObject):
    """The one place that says data changed; pages never emit their own `*_changed` signals."""

    changed = Signal(object)  # Change

    def notify(self, changes: Change) -> None:
        if changes:
            log.debug("changed: %s", changes)
            self.changed.emit(changes)

    def watch(self, changes: Change, refresh: Callable[[], None], *, owner: QObject) -> None:
        """Call `refresh()` on the GUI thread whenever one of `changes` happens, for as long as `owner` lives."""
        watcher = _Watcher(changes, refresh, owner)
        self.changed.connect(watcher.changed)


def run_change(fn: Callable[[], T], *, changes: Change, notifier: Notifier,
               on_done: Callable[[T], None] | None = None,
               on_error: Callable[[BaseException], None] | None = None) -> Job[T]:
    """`run_job` for work that changes data: every page watching `changes` refreshes when it ends.

    The pages are told on failure too: deleting five files may fail on the third after two are gone.
    """

    def done(result: T) -> None:
        notifier.notify(changes)
        if on_done is not None:
            on_done(result)

    def failed(error: BaseException) -> None:
        notifier.notify(changes)
        (on_error or report_error)(error)

    return run_job(fn, on_done=done, on_error=failed)
