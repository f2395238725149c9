"""The download queue: jobs run one after another on a background thread, driven by the GUI or the CLI."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from models.errors import DownloadError
from models.hub.download import DownloadProgress, DownloadRequest, DownloadResult, DownloadState, download
from models.hub.partial_lock import PartialLock
from models.hub.transfer import DownloadCancelled, DownloadPaused, StopToken
from models.paths import downloads_state_dir

log = logging.getLogger(__name__)



class DownloadJob:
    """One queued download; its fields are read by the GUI, its state changes only through DownloadQueue."""

    def __init__(self, request: DownloadRequest) -> None:
        self.id = hashlib.sha256(f"{request.repo_id}{request.files}{time.time_ns()}".encode()).hexdigest()[:12]
        self.request = request
        self.state = DownloadState.QUEUED
        self.progress: DownloadProgress | None = None
        self.result: DownloadResult | None = None
        self.error: str | None = None
        self._stop = StopToken()

    @property
    def label(self) -> str:
        return f"{self.request.repo_id}/{self.request.files[0].filename}" if self.request.files else self.request.repo_id


class DownloadQueue:
    """Downloads run one after another on a background thread; every change is reported through on_progress."""

    def __init__(self, *, on_progress: Callable[[DownloadJob, DownloadProgress], None] | None = None,
                 token: str | bool | None = None, **options: object) -> None:
        self._on_progress = on_progress
        self._token = token
        self._options = options
        self._jobs: list[DownloadJob] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="downloads", daemon=True)
        self._thread.start()

    def add(self, request: DownloadRequest) -> DownloadJob:
        job = DownloadJob(request)
        with self._cond:
            self._jobs.append(job)
            self._cond.notify_all()
        self._report(job, message="queued")
        return job

    def jobs(self) -> list[DownloadJob]:
        with self._cond:
            return list(self._jobs)

    def pause(self, job_id: str) -> None:
        job = self._get(job_id)
        with self._cond:
            if job.state == DownloadState.QUEUED:
                job.state = DownloadState.PAUSED
            elif job.state == DownloadState.RUNNING:
                job._stop.pause()
        self._report(job)

    def resume(self, job_id: str) -> None:
        job = self._get(job_id)
        with self._cond:
            if job.state in (DownloadState.PAUSED, DownloadState.FAILED):
                job.state, job.error, job._stop = DownloadState.QUEUED, None, StopToken()
                self._cond.notify_all()
        self._report(job, message="queued")

    def cancel(self, job_id: str) -> None:
        job = self._get(job_id)
        with self._cond:
            if job.state == DownloadState.RUNNING:
                job._stop.cancel()
                return
            if job.state in (DownloadState.DONE, DownloadState.CANCELLED):
                return
            job.state = DownloadState.CANCELLED
        discard_partials(job.request)
        self._report(job, message="cancelled")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no job is queued or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not any(
                j.state in (DownloadState.QUEUED, DownloadState.RUNNING) for j in self._jobs), timeout)

    def close(self) -> None:
        """Pause whatever runs (keeping its partial file) and stop the worker thread."""
        with self._cond:
            self._closed = True
            for job in self._jobs:
                if job.state == DownloadState.RUNNING:
                    job._stop.pause()
            self._cond.notify_all()
        self._thread.join()

    def _get(self, job_id: str) -> DownloadJob:
        for job in self.jobs():
            if job.id == job_id:
                return job
        raise KeyError(job_id)

    def _report(self, job: DownloadJob, progress: DownloadProgress | None = None, message: str = "") -> None:
        if progress is None:
            previous = job.progress
            progress = DownloadProgress(job.request.files[0].filename if job.request.files else "",
                                        previous.bytes_done if previous else 0,
                                        previous.bytes_total if previous else None, 0.0, None, job.state,
                                        message=message or (job.error or ""))
        job.progress = progress
        if self._on_progress is not None:
            try:
                self._on_progress(job, progress)
            except Exception:  # a broken listener must not kill the queue
                log.exception("Download progress listener failed")

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or any(j.state == DownloadState.QUEUED for j in self._jobs))
                if self._closed:
                    return
                job = next(j for j in self._jobs if j.state == DownloadState.QUEUED)
                job.state = DownloadState.RUNNING
            def report(progress: DownloadProgress, job: DownloadJob = job) -> None:
                self._report(job, progress)

            try:
                job.result = download(job.request, token=self._token, stop=job._stop, on_progress=report,
                                      **self._options)  # type: ignore[arg-type]
                state = DownloadState.DONE
            except DownloadPaused:
                state = DownloadState.PAUSED
            except DownloadCancelled:
                state = DownloadState.CANCELLED
            except DownloadError as error:
                state, job.error = DownloadState.FAILED, str(error)
            except Exception as error:  # unexpected: reported on the job, never lost on a dead thread
                log.exception("Download of %s failed", job.label)
                state, job.error = DownloadState.FAILED, f"{type(error).__name__}: {error}"
            with self._cond:
                job.state = state
                self._cond.notify_all()
            self._report(job, message=job.error or state.value)


def discard_partials(request: DownloadRequest) -> int:
    """Delete the partial files of a request's files (whatever their ETag); returns how many were removed."""
    removed = 0
    wanted = {(request.repo_id, f.filename) for f in request.files}
    for info, state in _states():
        if (info.get("repo_id"), info.get("filename")) in wanted:
            lock = PartialLock(state.with_suffix(".lock"), what=f"{info.get('repo_id')}/{info.get('filename')}",
                               timeout_s=0)
            try:
                lock.acquire()
            except DownloadError as busy:  # another process is writing it: its partial is not ours to delete
                log.info("Partial file kept: %s", busy)
                continue
            try:
                state.with_suffix(".part").unlink(missing_ok=True)
                state.unlink(missing_ok=True)
            finally:
                lock.release()
            removed += 1
    return removed


def pending_downloads() -> list[dict]:
    """Partial downloads left on disk (paused, cut off, killed): what a restart can resume, with bytes_done."""
    out = []
    for info, state in _states():
        partial = state.with_suffix(".part")
        info["bytes_done"] = partial.stat().st_size if partial.exists() else 0
        out.append(info)
    return out


def _states() -> list[tuple[dict, Path]]:
    found = []
    for state in sorted(downloads_state_dir().glob("*.json")):
        try:
            info = json.loads(state.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict):
            found.append((info, state))
    return found
