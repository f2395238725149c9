"""Resumable transfer of one Hub file into its partial file: ranged GETs, retries, sha256 as bytes arrive."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import constants, get_hf_file_metadata, get_token, hf_hub_url
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from models.errors import DownloadError
from models.hub.repos import RemoteFile

log = logging.getLogger(__name__)
T = TypeVar("T")

_CHUNK = 1 << 20
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_write = os.write  # the one place bytes hit the disk (a test replaces it to simulate a full disk)


class DownloadPaused(DownloadError):
    """Stopped on request; the partial file is kept and the next run resumes from it."""


class DownloadCancelled(DownloadError):
    """Stopped on request; the partial file was discarded."""


class StopToken:
    """Ask a running download to stop: pause() keeps the partial file, cancel() discards it."""

    def __init__(self, event: threading.Event | None = None) -> None:
        self._event = event if event is not None else threading.Event()
        self.discard = False

    def pause(self) -> None:
        self._event.set()

    def cancel(self) -> None:
        self.discard = True
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)


@dataclass
class Part:
    """One file of a job: where it comes from, and the partial file and state file it grows in."""

    remote: RemoteFile
    url: str
    etag: str
    size: int
    partial: Path
    state: Path


class Hasher:
    """sha256 on its own thread: hashlib releases the GIL, so hashing overlaps the network instead of adding to it."""

    def __init__(self, prefix: Path | None = None, prefix_len: int = 0) -> None:
        self._digest = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        self.fed = prefix_len  # bytes of the file this digest covers (or will, once the thread catches up)
        self._thread = threading.Thread(target=self._run, args=(prefix, prefix_len), name="sha256", daemon=True)
        self._thread.start()

    def _run(self, prefix: Path | None, prefix_len: int) -> None:
        if prefix is not None and prefix_len:
            # Resuming: the bytes already on disk are hashed first, while the rest arrives.
            with prefix.open("rb") as handle:
                left = prefix_len
                while left and (block := handle.read(min(left, 8 * _CHUNK))):
                    self._digest.update(block)
                    left -= len(block)
        while (chunk := self._queue.get()) is not None:
            self._digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)
        self.fed += len(chunk)

    def abandon(self) -> None:
        self._queue.put(None)

    def hexdigest(self) -> str:
        self._queue.put(None)
        self._thread.join()
        return self._digest.hexdigest()


class Meter:
    """Speed over the last few seconds and the ETA, reported at most a few times a second."""

    def __init__(self, report: Callable[[int, float, float | None], None], total: int | None, done: int) -> None:
        self.report, self.total, self.done = report, total, done
        self.samples: deque[tuple[float, int]] = deque([(time.monotonic(), done)])
        self.last = 0.0

    def add(self, n: int, *, force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if not force and now - self.last < 0.25:
            return
        self.last = now
        self.samples.append((now, self.done))
        while len(self.samples) > 2 and now - self.samples[0][0] > 5.0:
            self.samples.popleft()
        span = now - self.samples[0][0]
        speed = (self.done - self.samples[0][1]) / span if span > 0 else 0.0
        eta = (self.total - self.done) / speed if speed > 0 and self.total is not None else None
        self.report(self.done, speed, eta)


def friendly_error(repo_id: str, error: Exception) -> DownloadError:
    """A Hub or network failure as one sentence that says what to do about it."""
    if isinstance(error, hf_errors.OfflineModeIsEnabled):
        return DownloadError(f"{repo_id}: offline mode is on (HF_HUB_OFFLINE); nothing was downloaded.")
    if isinstance(error, hf_errors.GatedRepoError):
        how = ("log in with `hf auth login` so Tokenometer can use your token" if get_token() is None
               else "your token has no access yet (the request may still be pending)")
        return DownloadError(f"{repo_id} is gated: accept its terms at {constants.ENDPOINT}/{repo_id}, and {how}.")
    if isinstance(error, hf_errors.RemoteEntryNotFoundError):
        return DownloadError(f"{repo_id} has no such file ({error.response.url if error.response else ''}).")
    if isinstance(error, hf_errors.RepositoryNotFoundError):
        return DownloadError(f"{repo_id}: no such repo, or it is private and needs a token (`hf auth login`).")
    if isinstance(error, hf_errors.RevisionNotFoundError):
        return DownloadError(f"{repo_id}: no such revision.")
    if isinstance(error, hf_errors.HfHubHTTPError) and error.response is not None:
        return DownloadError(f"{repo_id}: the Hub answered HTTP {error.response.status_code}.")
    return DownloadError(f"{repo_id}: {type(error).__name__}: {error}")


def _retryable(error: Exception) -> bool:
    if isinstance(error, httpx2.TransportError):
        return True
    response = getattr(error, "response", None)
    return isinstance(error, hf_errors.HfHubHTTPError) and response is not None \
        and response.status_code in _RETRY_STATUS


def gb(n: int) -> str:
    """A byte count for a message: GB from 0.1 GB up, MB below."""
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


class _Progressed(Exception):
    """Internal: an attempt moved forward (or must restart), so the failure count starts again."""


class Transfer:
    """The network side of one job: retries with back-off that a pause interrupts, and each file's resumable GET."""

    def __init__(self, repo_id: str, *, token: str | bool | None, stop: StopToken, backoff_s: float,
                 max_retries: int) -> None:
        self.repo_id, self.token, self.stop = repo_id, token, stop
        self.backoff_s, self.max_retries = backoff_s, max_retries

    def retrying(self, what: str, attempt_fn: Callable[[], T]) -> T:
        """Call attempt_fn until it succeeds; back off on dropped connections and 5xx; a pause interrupts."""
        failures = 0
        while True:
            if self.stop.is_set():
                raise self.stopped()
            try:
                return attempt_fn()
            except (httpx2.HTTPError, hf_errors.HfHubHTTPError) as error:
                if not _retryable(error) or failures >= self.max_retries:
                    raise friendly_error(self.repo_id, error) from error
                failures += 1
                delay = min(self.backoff_s * 2 ** (failures - 1), 30.0)
                log.warning("%s failed (%s); retry %d in %.1f s", what, error, failures, delay)
                if self.stop.wait(delay):
                    raise self.stopped() from error
            except _Progressed:
                failures = 0

    def stopped(self) -> DownloadError:
        if self.stop.discard:
            return DownloadCancelled(f"Download of {self.repo_id} cancelled; partial files removed.")
        return DownloadPaused(f"Download of {self.repo_id} paused; the partial file is kept and the "
                              "next run resumes from it.")

    def fetch(self, part: Part, meter: Meter, commit: str | None) -> Hasher | None:
        """Bring the partial file to full size; returns the hasher to finish when the Hub gave a sha256 to check."""
        part.state.write_text(json.dumps({
            "repo_id": self.repo_id, "filename": part.remote.filename, "etag": part.etag,
            "commit": commit, "size": part.size, "sha256": part.remote.sha256}))
        headers = build_hf_headers(token=self.token)
        headers["Accept-Encoding"] = "identity"
        if urlsplit(part.url).netloc != urlsplit(constants.ENDPOINT).netloc:
            headers.pop("authorization", None)  # a signed CDN URL must never get the Hub token
        hasher: Hasher | None = None
        refreshes = 0

        def on_disk() -> int:
            return part.partial.stat().st_size if part.partial.exists() else 0

        def attempt() -> None:
            nonlocal hasher, refreshes
            have = on_disk()
            if have > part.size:  # not this file (or a corrupted partial): start over
                part.partial.unlink()
                meter.add(-have)
                have = 0
            if part.remote.sha256 and (hasher is None or hasher.fed != have):
                if hasher is not None:
                    hasher.abandon()
                hasher = Hasher(part.partial, have)
            if have >= part.size:
                return
            with get_session().stream("GET", part.url, headers={**headers, "Range": f"bytes={have}-"},
                                      timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as response:
                if response.status_code == 416:
                    part.partial.unlink(missing_ok=True)  # the partial is longer than the file: start over
                    meter.add(-have)
                    raise _Progressed()
                if response.status_code == 403 and "authorization" not in headers and refreshes < 2:
                    # A signed CDN link that expired during a long transfer: ask the Hub for a fresh one.
                    refreshes += 1
                    part.url = get_hf_file_metadata(hf_hub_url(self.repo_id, part.remote.filename,
                                                               revision=commit), token=self.token).location
                    raise _Progressed()
                if response.status_code >= 400:
                    response.read()
                    hf_raise_for_status(response)
                if response.status_code == 200 and have:
                    log.info("The server ignored the Range header; restarting %s", part.remote.filename)
                    part.partial.unlink(missing_ok=True)
                    meter.add(-have)
                    raise _Progressed()
                self._write_body(part, response, meter, hasher, have)
            if on_disk() < part.size:
                raise _Progressed()  # a short body without an error: ask for the rest

        try:
            self.retrying(part.remote.filename, attempt)
        except BaseException:
            if hasher is not None:
                hasher.abandon()  # its thread would otherwise wait for chunks for ever
            raise
        return hasher

    def _write_body(self, part: Part, response: httpx2.Response, meter: Meter, hasher: Hasher | None,
                    have: int) -> None:
        fd = os.open(part.partial, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        got = 0
        try:
            for chunk in response.iter_bytes():
                view = memoryview(chunk)
                while view:
                    try:
                        written = _write(fd, view)
                    except OSError as error:
                        if error.errno == errno.ENOSPC:
                            raise DownloadError(
                                f"The disk is full while writing {part.remote.filename} ({gb(have + got)} of "
                                f"{gb(part.size)} done). The partial file is kept: free some space and run the "
                                "download again to resume.") from error
                        raise DownloadError(f"Cannot write {part.partial}: {error.strerror}") from error
                    view = view[written:]
                    got += written
                    meter.add(written)
                if hasher is not None:
                    hasher.update(chunk)
                if self.stop.is_set():
                    raise self.stopped()
        except httpx2.TransportError:
            if got:
                raise _Progressed() from None  # the connection dropped after some bytes: resume from the disk
            raise
        finally:
            os.close(fd)
