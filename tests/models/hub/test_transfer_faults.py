"""Hostile transfers against the loopback Hub: two processes on one file, endless bodies, servers that ignore Range."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from huggingface_hub import try_to_load_from_cache

import models.hub.transfer as transfer
from models.errors import DownloadError
from models.hub.download import DownloadProgress, download, plan_download
from models.hub.download_queue import pending_downloads
from models.hub.transfer import StopToken
from models.paths import downloads_state_dir
from tests.models.hub.hubserver import HubServer

ROOT = Path(__file__).resolve().parents[3]
REPO = "org/Big-GGUF"
NAME = "big-Q8_0.gguf"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def big_repo(hub: HubServer, big_gguf: Path) -> Path:
    hub.add_repo(REPO, {NAME: big_gguf})
    return big_gguf


def _bounded(run: object, *, seconds: float = 60) -> tuple[object, BaseException | None, float]:
    """Run a download on a thread with a guard: a download that loops for ever is paused and reported, not hung."""
    stop = StopToken()
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["result"] = run(stop)  # type: ignore[operator]
        except BaseException as error:  # handed to the test
            outcome["error"] = error

    began = time.monotonic()
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        stop.pause()
        thread.join(30)
        pytest.fail(f"the download was still running after {seconds} s (a loop without progress)")
    return outcome.get("result"), outcome.get("error"), time.monotonic() - began  # type: ignore[return-value]


# --- 1. one partial file, one process ------------------------------------------------------------------------

def test_a_second_process_on_the_same_file_is_refused_naming_the_first(hub: HubServer, big_repo: Path) -> None:
    hub.faults.throttle_bps = 200_000  # the first download takes ~15 s unless the test lifts the throttle
    command = [sys.executable, "-m", "models.cli", "download", REPO, "Q8_0"]
    first = subprocess.Popen(command, cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60  # a guard against a hang, not a measurement
        while time.monotonic() < deadline and not any(
                p.stat().st_size > 100_000 for p in downloads_state_dir().glob("*.part")):
            time.sleep(0.05)
        second = subprocess.run(command, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
                                timeout=120)
        hub.faults.throttle_bps = None
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert second.returncode == 1, second.stderr
    assert f"already being downloaded by process {first.pid}" in second.stderr
    assert first.returncode == 0 and "sha256 verified" in err, err
    path = Path(out.strip().splitlines()[-1])
    assert path.stat().st_size == big_repo.stat().st_size and _sha(path) == _sha(big_repo)
    assert pending_downloads() == [] and list(downloads_state_dir().glob("*.lock")) == []


def test_a_lock_left_by_a_killed_process_does_not_block(hub: HubServer, big_repo: Path) -> None:
    hub.faults.throttle_bps = 1_000_000
    command = [sys.executable, "-m", "models.cli", "download", REPO, "Q8_0"]
    child = subprocess.Popen(command, cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
            p.stat().st_size > 100_000 for p in downloads_state_dir().glob("*.part")):
        time.sleep(0.05)
    child.kill()
    child.wait()
    assert list(downloads_state_dir().glob("*.lock"))  # the lock file is still there, its lock is not
    hub.faults.throttle_bps = None
    result = download(plan_download(REPO, "Q8_0"), lock_timeout_s=0.5)
    assert result.verified and _sha(result.paths[0]) == _sha(big_repo)


def test_verification_hashes_the_file_on_disk_not_the_bytes_received(hub: HubServer, big_repo: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Something outside this download (an older build without the lock, a sync tool) appends to the partial
    # once 1 MB is there; every byte this process received is right, the file on disk is not.
    state = {"written": 0, "done": False}

    def write_and_intrude(fd: int, data: memoryview) -> int:
        n = os.write(fd, data)
        state["written"] += n
        if state["written"] > 1_000_000 and not state["done"]:
            state["done"] = True
            partial = next(downloads_state_dir().glob("*.part"))
            with partial.open("ab") as other:
                other.write(b"intruder")
        return n

    monkeypatch.setattr(transfer, "_write", write_and_intrude)
    with pytest.raises(DownloadError, match="something else wrote to the partial file|does not match"):
        download(plan_download(REPO, "Q8_0"))
    assert try_to_load_from_cache(REPO, NAME) is None and pending_downloads() == []


# --- 5. a body longer than the file ------------------------------------------------------------------------

def test_an_endless_body_stops_at_the_file_size(hub: HubServer, big_repo: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    size = big_repo.stat().st_size
    request = plan_download(REPO, "Q8_0")
    hub.faults.overlong[NAME] = None  # the file, then junk without end and without a Content-Length
    most = 0

    def write_and_measure(fd: int, data: memoryview) -> int:
        nonlocal most
        n = os.write(fd, data)
        most = max(most, os.fstat(fd).st_size)
        return n

    monkeypatch.setattr(transfer, "_write", write_and_measure)
    with pytest.raises(DownloadError, match="sent more than the file's .* bytes"):
        download(request, backoff_s=0.01)
    assert most == size  # not one byte past the file reached the disk
    assert [p["bytes_done"] for p in pending_downloads()] == [size]
    hub.faults.overlong.clear()
    result = download(request)  # the kept bytes are checked against the Hub's sha256, not fetched again
    assert result.verified and _sha(result.paths[0]) == _sha(big_repo)
    assert len(hub.file_requests(NAME)) == 1


def test_a_body_longer_than_the_file_from_a_mirror_without_sha256_is_discarded(hub: HubServer,
                                                                               big_gguf: Path) -> None:
    hub.add_repo("org/Mirror-GGUF", {NAME: big_gguf}, lfs_metadata=False)
    hub.faults.overlong[NAME] = 5000
    with pytest.raises(DownloadError, match="cannot be checked, so the partial file was deleted"):
        download(plan_download("org/Mirror-GGUF", "Q8_0"))
    assert pending_downloads() == []


def test_a_partial_longer_than_the_file_is_discarded_on_resume(hub: HubServer, big_repo: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    request = plan_download(REPO, "Q8_0")
    stop = StopToken()

    def write_then_pause(fd: int, data: memoryview) -> int:
        stop.pause()  # the user pauses at once: a partial file and its state are left, as after a crash
        return os.write(fd, data)

    monkeypatch.setattr(transfer, "_write", write_then_pause)
    with pytest.raises(DownloadError):
        download(request, stop=stop)
    monkeypatch.setattr(transfer, "_write", os.write)
    partial = next(downloads_state_dir().glob("*.part"))
    partial.write_bytes(big_repo.read_bytes() + b"junk from a broken server" * 1000)
    seen: list[DownloadProgress] = []
    result = download(request, on_progress=seen.append)
    assert result.verified and _sha(result.paths[0]) == _sha(big_repo)
    assert hub.file_requests(NAME)[-1].range_start == 0
    assert all(p.speed_bps >= 0 for p in seen)


# --- 6. servers that never let a download finish -----------------------------------------------------------

def test_ignored_range_and_a_drop_mid_body_fail_after_bounded_attempts(hub: HubServer, big_repo: Path) -> None:
    request = plan_download(REPO, "Q8_0")
    hub.faults.ignore_range = True
    hub.faults.drop_every[NAME] = 1_000_000
    seen: list[DownloadProgress] = []
    _, error, _ = _bounded(lambda stop: download(request, stop=stop, backoff_s=0.01, max_retries=3,
                                                 on_progress=seen.append))
    assert isinstance(error, DownloadError) and "no progress in 4 attempts" in str(error), error
    assert "connection dropped" in str(error)
    assert len(hub.file_requests(NAME)) == 5  # one that moved forward, then four that did not
    assert all(p.speed_bps >= 0 for p in seen)


def test_a_cdn_that_answers_200_with_a_few_bytes_fails_clearly(hub: HubServer, big_repo: Path) -> None:
    request = plan_download(REPO, "Q8_0")
    hub.faults.short_cdn[NAME] = b"<html>ok</html>"
    _, error, _ = _bounded(lambda stop: download(request, stop=stop, backoff_s=0.01, max_retries=3))
    assert isinstance(error, DownloadError), error
    assert "announced 15 bytes where" in str(error) and "no progress" in str(error)
    assert len(hub.file_requests(NAME)) == 4
    assert pending_downloads()[0]["bytes_done"] == 0  # the few bytes were never taken for the file


def test_attempts_without_progress_back_off(hub: HubServer, big_repo: Path) -> None:
    request = plan_download(REPO, "Q8_0")
    hub.faults.short_cdn[NAME] = b"x"
    _, error, took = _bounded(lambda stop: download(request, stop=stop, backoff_s=0.2, max_retries=3))
    assert isinstance(error, DownloadError)
    assert took >= 0.2 + 0.4 + 0.8  # waits of 0.2, 0.4 and 0.8 s between the four attempts


def test_a_server_that_ignores_range_still_finishes_in_one_more_request(hub: HubServer, big_repo: Path) -> None:
    request = plan_download(REPO, "Q8_0")
    hub.faults.drop_after[NAME] = 1_000_000
    hub.faults.ignore_range = True
    result = download(request, backoff_s=0.01)
    assert result.verified and _sha(result.paths[0]) == _sha(big_repo)
    assert len(hub.file_requests(NAME)) == 2  # the cut one, then the whole file taken from its first byte


def test_a_held_partial_is_neither_downloaded_twice_nor_discarded(hub: HubServer, big_repo: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from models.hub.download_queue import discard_partials
    from models.hub.partial_lock import PartialLock

    request = plan_download(REPO, "Q8_0")
    stop = StopToken()

    def write_then_pause(fd: int, data: memoryview) -> int:
        stop.pause()
        return os.write(fd, data)

    monkeypatch.setattr(transfer, "_write", write_then_pause)
    with pytest.raises(DownloadError):
        download(request, stop=stop)
    monkeypatch.setattr(transfer, "_write", os.write)
    state = next(downloads_state_dir().glob("*.json"))
    kept = state.with_suffix(".part").stat().st_size
    # The app's queue holds the file (as a running job would) while the user starts it again elsewhere.
    with PartialLock(state.with_suffix(".lock"), what="x"):
        with pytest.raises(DownloadError, match="already being downloaded by another download in this process"):
            download(request, lock_timeout_s=0.2)
        assert discard_partials(request) == 0  # cancelling a queued copy must not delete the running one's bytes
        assert state.with_suffix(".part").stat().st_size == kept
    result = download(request)
    assert result.verified and hub.file_requests(NAME)[-1].range_start == kept
