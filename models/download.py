"""Downloads from the Hub: resumable across restarts, retried, sha256-verified, placed in the HF cache or a folder.

Why our own transfer and not `hf_hub_download`: its `<etag>.<uuid>.incomplete` file is unique to the process and
deleted when the call fails, so nothing survives a restart or a pause; a 5xx during the body is raised at once;
only the size is checked, never the sha256; a killed process can leave a lock with no timeout. Everything else
is huggingface_hub's: the URL, the HEAD metadata, the session and headers (token, proxy, endpoint), and at the
end its own cache placement (`hf_hub_download` finds our verified blob and links it into the snapshot).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import TypeVar
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import constants, get_hf_file_metadata, get_token, hf_hub_url
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from models import library
from models.errors import DownloadError, HubError
from models.hub import RemoteFile, file_checksums
from models.paths import downloads_state_dir

log = logging.getLogger(__name__)
T = TypeVar("T")

_CHUNK = 1 << 20
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_write = os.write  # the one place bytes hit the disk (a test replaces it to simulate a full disk)


class DownloadState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    VERIFYING = "verifying"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class DownloadProgress:
    """One progress report; bytes are for the whole job (all shards of a split model)."""

    filename: str
    bytes_done: int
    bytes_total: int | None
    speed_bps: float
    eta_s: float | None
    state: DownloadState
    file_index: int = 0
    file_count: int = 1
    message: str = ""


@dataclass(frozen=True)
class DownloadRequest:
    """What to fetch: one model (a single GGUF or every shard of a split one) from one repo."""

    repo_id: str
    files: tuple[RemoteFile, ...]
    revision: str = "main"
    target_dir: Path | None = None  # None: the Hugging Face cache


@dataclass(frozen=True)
class DownloadResult:
    paths: list[Path]
    verified: bool
    commit: str | None
    notes: list[str] = field(default_factory=list)


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


def safe_relative(filename: str) -> PurePosixPath:
    """A Hub file name as a path that stays inside its folder; refuses `..`, absolute paths and drive letters."""
    path = PurePosixPath(filename)
    if (not filename or "\\" in filename or "\0" in filename or path.is_absolute() or ".." in path.parts
            or (path.parts and ":" in path.parts[0])):
        raise DownloadError(f"Refusing the file name {filename!r}: it would leave the download folder.")
    return path


def plan_download(repo_id: str, selector: str, *, revision: str | None = None, target_dir: Path | None = None,
                  token: str | bool | None = None) -> DownloadRequest:
    """The request for a quant label (Q4_K_M) or a file name of a repo, all shards included."""
    from models.hub import repo_files

    repo = repo_files(repo_id, revision=revision, token=token)
    model = repo.find(selector)
    return DownloadRequest(repo_id, model.files, revision or "main", target_dir)


@dataclass
class _Part:
    remote: RemoteFile
    url: str
    etag: str
    size: int
    partial: Path
    state: Path


class _Hasher:
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


class _Meter:
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


def _friendly(repo_id: str, error: Exception) -> DownloadError:
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


class _Progressed(Exception):
    """Internal: an attempt moved forward (or must restart), so the failure count starts again."""


class _Runner:
    """One job: resolve, check disk, fetch each shard with resume and retries, verify, place."""

    def __init__(self, request: DownloadRequest, *, token: str | bool | None,
                 on_progress: Callable[[DownloadProgress], None] | None, stop: StopToken,
                 margin_bytes: int | None, backoff_s: float, max_retries: int) -> None:
        self.request, self.token, self.on_progress, self.stop = request, token, on_progress, stop
        self.margin_bytes, self.backoff_s, self.max_retries = margin_bytes, backoff_s, max_retries
        self.commit: str | None = None
        self.index = 0
        self.current = request.files[0].filename if request.files else ""

    def emit(self, state: DownloadState, done: int, total: int | None, speed: float = 0.0,
             eta: float | None = None, message: str = "") -> None:
        if self.on_progress is not None:
            self.on_progress(DownloadProgress(self.current, done, total, speed, eta, state, self.index,
                                              len(self.request.files), message))

    def retrying(self, what: str, attempt_fn: Callable[[], T]) -> T:
        """Call attempt_fn until it succeeds; back off on dropped connections and 5xx; a pause interrupts."""
        failures = 0
        while True:
            if self.stop.is_set():
                raise self._stopped()
            try:
                return attempt_fn()
            except (httpx2.HTTPError, hf_errors.HfHubHTTPError) as error:
                if not _retryable(error) or failures >= self.max_retries:
                    raise _friendly(self.request.repo_id, error) from error
                failures += 1
                delay = min(self.backoff_s * 2 ** (failures - 1), 30.0)
                log.warning("%s failed (%s); retry %d in %.1f s", what, error, failures, delay)
                if self.stop.wait(delay):
                    raise self._stopped() from error
            except _Progressed:
                failures = 0

    def _stopped(self) -> DownloadError:
        if self.stop.discard:
            return DownloadCancelled(f"Download of {self.request.repo_id} cancelled; partial files removed.")
        return DownloadPaused(f"Download of {self.request.repo_id} paused; the partial file is kept and the "
                              "next run resumes from it.")

    def resolve(self) -> list[_Part]:
        parts = []
        state_dir = downloads_state_dir()
        for remote in self.request.files:
            safe_relative(remote.filename)
            url = hf_hub_url(self.request.repo_id, remote.filename, revision=self.commit or self.request.revision)
            meta = self.retrying(f"HEAD {remote.filename}", lambda: get_hf_file_metadata(url, token=self.token))
            if meta.commit_hash is None or meta.etag is None or meta.size is None:
                raise DownloadError(f"{self.request.repo_id}/{remote.filename}: the server gave no commit, ETag or "
                                    "size; is HF_ENDPOINT a Hub?")
            self.commit = self.commit or meta.commit_hash
            key = hashlib.sha256(f"{self.request.repo_id}\0{remote.filename}\0{meta.etag}".encode()).hexdigest()[:32]
            parts.append(_Part(remote, meta.location, meta.etag, meta.size, state_dir / f"{key}.part",
                               state_dir / f"{key}.json"))
        missing = [p.remote.filename for p in parts if not p.remote.sha256]
        if missing:  # e.g. a bare file name: ask the Hub for the LFS sha256 at the pinned commit
            try:
                sums = file_checksums(self.request.repo_id, missing, revision=self.commit, token=self.token)
            except HubError as error:
                log.info("No checksums from paths-info: %s", error)
                sums = {}
            for part in parts:
                if not part.remote.sha256 and sums.get(part.remote.filename):
                    part.remote = sums[part.remote.filename]
        return parts

    def check_disk(self, parts: list[_Part]) -> None:
        total = sum(p.size for p in parts)
        remaining = sum(max(0, p.size - (p.partial.stat().st_size if p.partial.exists() else 0)) for p in parts)
        margin = self.margin_bytes if self.margin_bytes is not None else max(256 << 20, total // 50)
        dest = self.request.target_dir or Path(constants.HF_HUB_CACHE)
        dest_probe = next((d for d in [dest, *dest.parents] if d.exists()), Path("/"))
        state_dir = downloads_state_dir()
        needs = [(state_dir, remaining)]
        if os.stat(dest_probe).st_dev != os.stat(state_dir).st_dev:
            needs.append((dest_probe, total))  # a move across file systems is a copy
        for folder, need in needs:
            free = shutil.disk_usage(folder).free
            if free < need + margin:
                raise DownloadError(
                    f"Not enough free disk in {folder}: the download needs {_gb(need)} plus a {_gb(margin)} margin, "
                    f"and {_gb(free)} is free. Free some space, or choose another folder.")

    def fetch(self, part: _Part, meter: _Meter) -> str | None:
        """Bring the partial file to full size; returns its sha256 when the Hub gave one to check against."""
        part.state.write_text(json.dumps({
            "repo_id": self.request.repo_id, "filename": part.remote.filename, "etag": part.etag,
            "commit": self.commit, "size": part.size, "sha256": part.remote.sha256}))
        headers = build_hf_headers(token=self.token)
        headers["Accept-Encoding"] = "identity"
        if urlsplit(part.url).netloc != urlsplit(constants.ENDPOINT).netloc:
            headers.pop("authorization", None)  # a signed CDN URL must never get the Hub token
        hasher: _Hasher | None = None
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
                hasher = _Hasher(part.partial, have)
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
                    part.url = get_hf_file_metadata(hf_hub_url(self.request.repo_id, part.remote.filename,
                                                               revision=self.commit), token=self.token).location
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
        if hasher is None:
            return None
        self.emit(DownloadState.VERIFYING, meter.done, meter.total, message=f"sha256 of {part.remote.filename}")
        return hasher.hexdigest()

    def _write_body(self, part: _Part, response: httpx2.Response, meter: _Meter, hasher: _Hasher | None,
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
                                f"The disk is full while writing {part.remote.filename} ({_gb(have + got)} of "
                                f"{_gb(part.size)} done). The partial file is kept: free some space and run the "
                                "download again to resume.") from error
                        raise DownloadError(f"Cannot write {part.partial}: {error.strerror}") from error
                    view = view[written:]
                    got += written
                    meter.add(written)
                if hasher is not None:
                    hasher.update(chunk)
                if self.stop.is_set():
                    raise self._stopped()
        except httpx2.TransportError:
            if got:
                raise _Progressed() from None  # the connection dropped after some bytes: resume from the disk
            raise
        finally:
            os.close(fd)

    def verify(self, part: _Part, digest: str | None) -> bool:
        if not part.remote.sha256 or digest is None:
            return False
        if digest != part.remote.sha256.lower():
            part.partial.unlink(missing_ok=True)
            part.state.unlink(missing_ok=True)
            raise DownloadError(
                f"{part.remote.filename} does not match the Hub's sha256 (expected {part.remote.sha256}, got "
                f"{digest}); it was not added to the library and the bad copy was deleted.")
        return True

    def place(self, part: _Part) -> Path:
        if self.request.target_dir is not None:
            return library.adopt_into_folder(part.partial, self.request.target_dir, safe_relative(part.remote.filename))
        return library.adopt_into_hf_cache(part.partial, repo_id=self.request.repo_id, filename=part.remote.filename,
                                           etag=part.etag, commit=self.commit or "", revision=self.request.revision,
                                           token=self.token)

    def cached(self, part: _Part) -> bool:
        """The HF cache already holds this exact blob (same ETag and size): nothing to fetch."""
        if self.request.target_dir is not None:
            return False
        blob = library.hf_blob_path(self.request.repo_id, part.etag)
        return blob.is_file() and blob.stat().st_size == part.size

    def run(self) -> DownloadResult:
        self.emit(DownloadState.RUNNING, 0, None, message="resolving")
        try:
            parts = self.resolve()
        except (hf_errors.HfHubHTTPError, httpx2.HTTPError, hf_errors.OfflineModeIsEnabled) as error:
            raise _friendly(self.request.repo_id, error) from error
        self.check_disk([p for p in parts if not self.cached(p)])
        total = sum(p.size for p in parts)
        done = sum(min(p.size, p.partial.stat().st_size) for p in parts if p.partial.exists())
        meter = _Meter(lambda d, s, e: self.emit(DownloadState.RUNNING, d, total, s, e), total, done)
        verified, notes = True, []
        for self.index, part in enumerate(parts):
            self.current = part.remote.filename
            if self.cached(part):
                meter.add(part.size, force=True)
                continue
            try:
                digest = self.fetch(part, meter)
            except DownloadCancelled:
                for each in parts:
                    each.partial.unlink(missing_ok=True)
                    each.state.unlink(missing_ok=True)
                raise
            meter.add(0, force=True)
            if not self.verify(part, digest):
                verified = False
                notes.append(f"{part.remote.filename}: the Hub gave no sha256 (a mirror?); only the size was checked, "
                             "the content is unverified.")
        try:
            paths = [self.place(part) for part in parts]
        except (hf_errors.HfHubHTTPError, httpx2.HTTPError) as error:
            raise _friendly(self.request.repo_id, error) from error
        for part in parts:
            part.state.unlink(missing_ok=True)
        self.emit(DownloadState.DONE, total, total, message="verified" if verified else "unverified")
        return DownloadResult(paths, verified, self.commit, notes)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def download(request: DownloadRequest, *, token: str | bool | None = None,
             on_progress: Callable[[DownloadProgress], None] | None = None,
             stop: StopToken | threading.Event | None = None, margin_bytes: int | None = None,
             backoff_s: float = 1.0, max_retries: int = 5) -> DownloadResult:
    """Run one download to the end (blocking); raises DownloadPaused, DownloadCancelled or DownloadError.

    `stop`: a StopToken (pause or cancel), or a plain threading.Event whose set() means pause.
    """
    token_obj = stop if isinstance(stop, StopToken) else StopToken(stop)
    runner = _Runner(request, token=token, on_progress=on_progress, stop=token_obj, margin_bytes=margin_bytes,
                     backoff_s=backoff_s, max_retries=max_retries)
    return runner.run()
