"""What the pages share: the benchmark queue, the download queue, the hardware facts and page navigation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Signal

from desktop.bench_queue import BenchQueue
from desktop.jobs import Bridge, Change, Job, Notifier, run_change, run_job
from models.bench.events import BenchEvent
from models.bench.spec import BenchJob

log = logging.getLogger(__name__)


class AppContext(QObject):
    """One per window; pages get it at construction and talk to each other only through it.

    Core modules are imported inside the methods that use them: the window must be on screen before
    the library, the store or huggingface_hub are loaded.
    """

    open_page = Signal(str)
    benchmark_requested = Signal(list)  # list[Path]: "Benchmark this" from another page
    # Fired by the notifier only (see change()); kept for pages that connect to them directly.
    results_changed = Signal()
    library_changed = Signal()
    hardware_ready = Signal(object)
    hardware_failed = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._machine: dict[str, Any] | None = None
        self.changes = Notifier(self)
        self.changes.changed.connect(self._legacy_signals)
        self.bench = BenchQueue(self, recorder=self._recorder)
        self.bench.finished.connect(lambda _item: self.changes.notify(Change.RESULTS))
        self._downloads: Any = None
        # Download progress arrives on the queue's thread; the bridge re-emits it on the GUI thread.
        self.download_bridge = Bridge(self)
        self.download_bridge.arrived.connect(self._download_event)
        self._hardware: Any = None
        self._hardware_probing = False
        # One probe at a time: each asks llama.cpp about itself in a child process, which is not cheap.
        self._probe_lock = threading.Lock()

    # -- results --
    def _recorder(self) -> tuple[Callable[[BenchJob, BenchEvent], None], Callable[[], None]]:
        """Store every result as it arrives. Runs on the benchmark thread: no SQLite or probing on the GUI's."""
        from models.machine.hardware import machine_fingerprint
        from models.results.recorder import open_recorder

        if self._machine is None:
            self.probe_hardware()  # shares the probe the Hardware page may have started
            with self._probe_lock:
                self._machine = machine_fingerprint()
        from models.results.capacity import with_measurements

        settings = self.settings()
        record, close = open_recorder(machine=self._machine, settings=settings)
        # Batched sweeps and load tests (the Capacity page) are kept as measurements, not as runs.
        return with_measurements(record, close, machine=self._machine, settings=settings)

    def open_store(self) -> Any:
        """The results store (a new connection: call from a job, close it after)."""
        from models.results.store import ResultsStore

        return ResultsStore()

    # -- hardware: probed once, off the GUI thread, for the first page that asks --
    def hardware(self) -> Any | None:
        return self._hardware

    def probe_hardware(self, *, refresh: bool = False) -> Any:
        """The hardware facts (blocking: call from a job); probed once unless refreshed."""
        from models.machine.hardware import probe_hardware

        with self._probe_lock:
            if self._hardware is None or refresh:
                self._hardware = probe_hardware()
            return self._hardware

    def request_hardware(self, *, refresh: bool = False) -> None:
        """Probe in the background; `hardware_ready` or `hardware_failed` tells the pages."""
        if self._hardware is not None and not refresh:
            self.hardware_ready.emit(self._hardware)
            return
        if self._hardware_probing:
            return
        self._hardware_probing = True

        # The probe takes seconds; the window (and this context) may be closed before it ends.
        def ready(info: Any) -> None:
            if shiboken6.isValid(self):
                self._hardware_probing = False
                self.hardware_ready.emit(info)

        def failed(error: BaseException) -> None:
            if shiboken6.isValid(self):
                self._hardware_probing = False
                self.hardware_failed.emit(error)

        run_job(lambda: self.probe_hardware(refresh=refresh), on_done=ready, on_error=failed)

    # -- settings and the local models --
    def settings(self) -> Any:
        """The user's settings (models.settings.Settings), read fresh: the Settings page may have changed them."""
        from models.settings import load_settings

        return load_settings()

    def local_models(self) -> list[tuple[str, Path, str]]:
        """(name, path, tooltip) of every model on disk, the starter first. Touches the disk: run it as a job."""
        from models.hub.library import list_models

        entries = []
        for entry in list_models(read_headers=False):
            name = entry.label or entry.path.name
            if entry.source == "starter":
                name += " (starter)"
            entries.append((name, entry.path, f"{entry.path} ({entry.source})"))
        return entries

    # -- downloads: one queue for the app, its plain callback turned into a signal --
    def downloads(self) -> Any:
        """The download queue (models.hub.download_queue.DownloadQueue), created on first use."""
        if self._downloads is None:
            from huggingface_hub import get_token

            from models.hub.download_queue import DownloadQueue

            self._downloads = DownloadQueue(on_progress=self.download_bridge, token=get_token() or None)
        return self._downloads

    def _download_event(self, args: tuple[Any, ...]) -> None:
        job, progress = args[0], args[1]
        if getattr(progress, "state", None) == "done" and job.result is not None:
            self.changes.notify(Change.LIBRARY)  # a finished download is a new model in the library

    # -- changes: one shape for work that changes data, and one way for pages to hear of it --
    def change(self, fn: Callable[[], Any], *, changes: Change, on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[BaseException], None] | None = None) -> Job[Any]:
        """Run `fn` off the GUI thread; then every page that shows `changes` refreshes (see jobs.run_change)."""
        return run_change(fn, changes=changes, notifier=self.changes, on_done=on_done, on_error=on_error)

    def watch(self, changes: Change, refresh: Callable[[], None], *, owner: QObject) -> None:
        """`refresh()` whenever a change operation (or a finished benchmark or download) touches `changes`."""
        self.changes.watch(changes, refresh, owner=owner)

    def _legacy_signals(self, changes: Change) -> None:
        if changes & Change.LIBRARY:
            self.library_changed.emit()
        if changes & Change.RESULTS:
            self.results_changed.emit()

    # -- navigation --
    def benchmark(self, paths: list[Path]) -> None:
        """Open the benchmark page with these models picked."""
        self.open_page.emit("benchmark")
        self.benchmark_requested.emit(list(paths))

    def shutdown(self) -> None:
        self.bench.shutdown()
        if self._downloads is not None:
            self._downloads.close()  # pauses a running download; its partial file is resumed next time
            self._downloads = None
