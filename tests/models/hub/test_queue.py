"""The download queue the GUI drives: one job at a time, pause, resume, cancel, progress per job."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import models.hub.download as dl
import models.hub.transfer as transfer
from models.hub.download import DownloadProgress, DownloadState, plan_download
from models.hub.download_queue import DownloadJob, DownloadQueue, pending_downloads
from tests.models.hub.hubserver import HubServer


def test_queue_runs_jobs_one_after_another(hub: HubServer, tiny_gguf: Path, big_gguf: Path) -> None:
    hub.add_repo("org/A-GGUF", {"a-Q4_K_M.gguf": tiny_gguf})
    hub.add_repo("org/B-GGUF", {"b-Q8_0.gguf": big_gguf})
    events: list[tuple[str, DownloadState]] = []
    queue = DownloadQueue(on_progress=lambda job, p: events.append((job.id, p.state)))
    try:
        first = queue.add(plan_download("org/A-GGUF", "Q4_K_M"))
        second = queue.add(plan_download("org/B-GGUF", "Q8_0"))
        assert queue.wait(timeout=60)
        assert [j.state for j in queue.jobs()] == [DownloadState.DONE, DownloadState.DONE]
        assert first.result is not None and first.result.verified and second.result is not None
        # One at a time: every event of the first job comes before the second job starts running.
        last_first = max(i for i, (jid, _) in enumerate(events) if jid == first.id)
        first_running_second = min(i for i, (jid, s) in enumerate(events)
                                   if jid == second.id and s == DownloadState.RUNNING)
        assert last_first < first_running_second
    finally:
        queue.close()


def test_queue_pause_resume_and_cancel(hub: HubServer, big_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_repo("org/B-GGUF", {"b-Q8_0.gguf": big_gguf})
    midway = threading.Event()
    proceed = threading.Event()

    def slow_write(fd: int, data: memoryview) -> int:
        # Hold the transfer after the first bytes until the test has pressed pause (no sleeps, no timing).
        n = os.write(fd, data[:200_000])
        midway.set()
        proceed.wait(30)
        return n

    monkeypatch.setattr(transfer, "_write", slow_write)
    states: list[DownloadState] = []
    queue = DownloadQueue(on_progress=lambda job, p: states.append(p.state))
    try:
        job: DownloadJob = queue.add(plan_download("org/B-GGUF", "Q8_0"))
        assert midway.wait(30)
        queue.pause(job.id)
        proceed.set()
        assert queue.wait(timeout=60)
        kept = pending_downloads()[0]["bytes_done"]
        assert job.state == DownloadState.PAUSED and 0 < kept < big_gguf.stat().st_size
        monkeypatch.setattr(transfer, "_write", os.write)
        queue.resume(job.id)
        assert queue.wait(timeout=60)
        assert job.state == DownloadState.DONE and job.result is not None and job.result.verified
        assert hub.file_requests("b-Q8_0.gguf")[-1].range_start == kept  # resumed, not restarted
        other = queue.add(plan_download("org/B-GGUF", "Q8_0", target_dir=Path(os.environ["TOKENOMETER_HOME"]) / "d"))
        queue.pause(other.id)  # may still be queued or already running: both end paused
        queue.wait(timeout=60)
        if other.state == DownloadState.PAUSED:
            queue.cancel(other.id)
            assert other.state == DownloadState.CANCELLED
        assert pending_downloads() == []
    finally:
        queue.close()
    assert DownloadState.PAUSED in states and states[-1] in (DownloadState.CANCELLED, DownloadState.DONE)


def test_a_failed_job_reports_its_error_and_the_queue_goes_on(hub: HubServer, tiny_gguf: Path) -> None:
    hub.add_repo("org/A-GGUF", {"a-Q4_K_M.gguf": tiny_gguf})
    seen: list[DownloadProgress] = []
    queue = DownloadQueue(on_progress=lambda job, p: seen.append(p))
    try:
        request = plan_download("org/A-GGUF", "Q4_K_M")
        bad = dl.DownloadRequest("org/A-GGUF", (dl.RemoteFile("../x.gguf", None, None),))
        failed = queue.add(bad)
        good = queue.add(request)
        assert queue.wait(timeout=60)
        assert failed.state == DownloadState.FAILED and "Refusing" in (failed.error or "")
        assert good.state == DownloadState.DONE
        assert any(p.state == DownloadState.FAILED and "Refusing" in p.message for p in seen)
    finally:
        queue.close()
