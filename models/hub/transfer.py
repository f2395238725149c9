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
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from models.errors import DownloadError
from models.hub.messages import hub_error_message
from models.hub.repos import RemoteFile
from models.units import fmt_bytes

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
    """sha256 of the partial file as it is on disk, on its own thread that follows the writer.

    It reads the file, not the bytes this process received, so whatever else reached the file is in the digest;
    the reads come from the page cache and hashlib releases the GIL, so hashing overlaps the network.
    """

    def __init__(self, path: Path, prefix_len: int = 0) -> None:
        self.path = path
        self._digest = hashlib.sha256()
        self._cond = threading.Condition()
        self.fed = prefix_len  # bytes of the file this process has on disk (the digest catches up to them)
        self.hashed = 0
        self._final = self._abandoned = False
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        handle = None
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._abandoned or self._final or self.fed > self.hashed)
                    if self._abandoned:
                        return
                    final, target = self._final, self.fed
                if handle is None:
                    try:
                        handle = self.path.open("rb")
                    except FileNotFoundError:
                        if final:
                            return  # nothing was ever written: the digest of nothing
                        raise
                # Up to what this process wrote; at the end, to the end of the file, whoever wrote it.
                while final or self.hashed < target:
                    block = handle.read(8 * _CHUNK if final else min(8 * _CHUNK, target - self.hashed))
                    if not block:
                        break
                    self._digest.update(block)
                    self.hashed += len(block)
                if final:
                    return
        except OSError as error:
            self._error = error
        finally:
            if handle is not None:
                handle.close()

    def update(self, n: int) -> None:
        """n more bytes of the file are on disk."""
        with self._cond:
            self.fed += n
            self._cond.notify()

    def abandon(self) -> None:
        with self._cond:
            self._abandoned = True
            self._cond.notify()

    def hexdigest(self) -> str:
        with self._cond:
            self._final = True
            self._cond.notify()
        self._thread.join()
        if self._error is not None:
            raise DownloadError(f"Cannot read {self.path} to check its sha256: {self._error.strerror}") \
                from self._error
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
        speed = max(0.0, (self.done - self.samples[0][1]) / span) if span > 0 else 0.0
        eta = (self.total - self.done) / speed if speed > 0 and self.total is not None else None
        self.report(self.done, speed, eta)

    def rewind(self, n: int) -> None:
        """n bytes were thrown away (the file starts over): the speed window starts again too."""
        self.done -= n
        self.samples = deque([(time.monotonic(), self.done)])


def friendly_error(repo_id: str, error: Exception) -> DownloadError:
    """A Hub or network failure as one sentence that says what to do about it (the wording search and listings use)."""
    return DownloadError(hub_error_message(repo_id, error, repo_id=repo_id))


def _retryable(error: Exception) -> bool:
    if isinstance(error, httpx2.TransportError):
        return True
    response = getattr(error, "response", None)
    return isinstance(error, hf_errors.HfHubHTTPError) and response is not None \
        and response.status_code in _RETRY_STATUS


class _Incomplete(Exception):
    """Internal: an attempt ended before the file was complete; whether it moved forward decides what follows."""

    def __init__(self, reason: str, *, wait: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.wait = reason, wait


class Transfer:
    """The network side of one job: retries with back-off that a pause interrupts, and each file's resumable GET."""

    def __init__(self, repo_id: str, *, token: str | bool | None, stop: StopToken, backoff_s: float,
                 max_retries: int) -> None:
        self.repo_id, self.token, self.stop = repo_id, token, stop
        self.backoff_s, self.max_retries = backoff_s, max_retries

    def retrying(self, what: str, attempt_fn: Callable[[], T], *, progressed: Callable[[], bool] | None = None) -> T:
        """Call attempt_fn until it succeeds; back off on dropped connections, 5xx and short bodies; a pause interrupts.

        `progressed()` says whether the last attempt moved the file further than ever before: only such an
        attempt starts the count again, so a server that keeps cutting the same body off (or ignores Range and
        restarts it) ends in a clear error after max_retries attempts instead of a loop.
        """
        failures = 0
        while True:
            if self.stop.is_set():
                raise self.stopped()
            try:
                return attempt_fn()
            except (httpx2.HTTPError, hf_errors.HfHubHTTPError, _Incomplete) as error:
                if not isinstance(error, _Incomplete) and not _retryable(error):
                    raise friendly_error(self.repo_id, error) from error
                if progressed is not None and progressed():
                    failures = 0
                    continue  # at once: the connection worked a moment ago
                if failures >= self.max_retries:
                    if isinstance(error, _Incomplete):
                        raise DownloadError(
                            f"{self.repo_id}/{what}: no progress in {failures + 1} attempts ({error.reason}); gave "
                            "up. The partial file is kept: run the download again later to resume.") from None
                    raise friendly_error(self.repo_id, error) from error
                failures += 1
                wait = error.wait if isinstance(error, _Incomplete) else True
                delay = min(self.backoff_s * 2 ** (failures - 1), 30.0) if wait else 0.0
                log.warning("%s: %s; retry %d of %d in %.1f s", what, error, failures, self.max_retries, delay)
                if delay and self.stop.wait(delay):
                    raise self.stopped() from None

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
        # The most bytes the partial has held in this call: only beating it counts as progress. Never lowered
        # when the file starts over, or a server that ignores Range and drops mid-body would loop for ever.
        best = part.partial.stat().st_size if part.partial.exists() else 0
        best = best if best <= part.size else 0

        def on_disk() -> int:
            return part.partial.stat().st_size if part.partial.exists() else 0

        def start_over(have: int, why: str) -> None:
            nonlocal hasher
            log.info("%s: %s; starting the file again from byte 0", part.remote.filename, why)
            part.partial.unlink(missing_ok=True)
            meter.rewind(have)
            if hasher is not None:
                hasher.abandon()
                hasher = None

        def progressed() -> bool:
            nonlocal best
            now = on_disk()
            if now > best:
                best = now
                return True
            return False

        def attempt() -> None:
            nonlocal hasher, refreshes
            have = on_disk()
            if have > part.size:  # not this file (or a corrupted partial): start over
                start_over(have, f"the partial file holds {have} bytes, more than the file's {part.size}")
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
                    start_over(have, "the server says the partial file is longer than the file (HTTP 416)")
                    raise _Incomplete("the server refused the range (HTTP 416)", wait=False)
                if response.status_code == 403 and "authorization" not in headers and refreshes < 2:
                    # A signed CDN link that expired during a long transfer: ask the Hub for a fresh one.
                    refreshes += 1
                    part.url = get_hf_file_metadata(hf_hub_url(self.repo_id, part.remote.filename,
                                                               revision=commit), token=self.token).location
                    raise _Incomplete("the download link expired", wait=False)
                if response.status_code >= 400:
                    response.read()
                    hf_raise_for_status(response)
                if response.status_code == 200 and have:
                    # The server ignored Range and sends the whole file: take it from byte 0, in this response.
                    start_over(have, "the server ignored the Range header")
                    have = 0
                    if part.remote.sha256:
                        hasher = Hasher(part.partial, 0)
                _check_announced(part, response, have)
                self._write_body(part, response, meter, hasher, have)
            now = on_disk()
            if now < part.size:
                raise _Incomplete(f"the server ended the body at byte {now} of {part.size}")

        try:
            self.retrying(part.remote.filename, attempt, progressed=progressed)
        except BaseException:
            if hasher is not None:
                hasher.abandon()  # its thread would otherwise wait for bytes for ever
            raise
        return hasher

    def _write_body(self, part: Part, response: httpx2.Response, meter: Meter, hasher: Hasher | None,
                    have: int) -> None:
        fd = os.open(part.partial, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        got = 0
        limit = part.size - have  # never more than the file: a server that keeps sending cannot fill the disk
        try:
            for chunk in response.iter_bytes():
                view = memoryview(chunk)[:limit - got]
                excess = len(chunk) - len(view)
                while view:
                    try:
                        written = _write(fd, view)
                    except OSError as error:
                        if error.errno == errno.ENOSPC:
                            raise DownloadError(
                                f"The disk is full while writing {part.remote.filename} ({fmt_bytes(have + got)} of "
                                f"{fmt_bytes(part.size)} done). The partial file is kept: free some space and run the "
                                "download again to resume.") from error
                        raise DownloadError(f"Cannot write {part.partial}: {error.strerror}") from error
                    view = view[written:]
                    got += written
                    meter.add(written)
                    if hasher is not None:
                        hasher.update(written)
                if excess:
                    self._overflowed(part)
                if self.stop.is_set():
                    raise self.stopped()
        except httpx2.TransportError as error:
            raise _Incomplete(f"the connection dropped at byte {have + got} of {part.size} "
                              f"({type(error).__name__})") from None
        finally:
            os.close(fd)

    def _overflowed(self, part: Part) -> None:
        """The body goes on past the file's size: a corrupt response, stopped before one extra byte is written."""
        if part.remote.sha256:
            keep = ("The first {size} bytes are kept; the next run checks them against the Hub's sha256 and only "
                    "keeps them if they match.").format(size=part.size)
        else:
            part.partial.unlink(missing_ok=True)  # no sha256 to tell good bytes from bad: nothing is kept
            part.state.unlink(missing_ok=True)
            keep = "Without a sha256 from the Hub the bytes cannot be checked, so the partial file was deleted."
        raise DownloadError(f"{part.remote.filename}: the server sent more than the file's {part.size} bytes "
                            f"(a corrupt response from a broken server or proxy); the download stopped there. {keep}")


def _check_announced(part: Part, response: httpx2.Response, have: int) -> None:
    """A Content-Length or Content-Range that disagrees with the Hub's size is a corrupt response: not written."""
    expected = part.size - have
    announced = response.headers.get("Content-Length")
    if announced is not None and announced.strip().isdigit() and int(announced) != expected:
        raise _Incomplete(f"the server announced {int(announced)} bytes where {expected} were due "
                          f"(HTTP {response.status_code} from {urlsplit(str(response.url)).netloc})")
    if response.status_code == 206:
        ranged = response.headers.get("Content-Range", "")
        if not ranged.startswith(f"bytes {have}-"):
            raise _Incomplete(f"the server answered the range from byte {have} with {ranged!r}")
