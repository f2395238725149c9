"""Downloads from the Hub: resumable across restarts, retried, sha256-verified, placed in the HF cache or a folder.

Why our own transfer and not `hf_hub_download`: its `<etag>.<uuid>.incomplete` file is unique to the process and
deleted when the call fails, so nothing survives a restart or a pause; a 5xx during the body is raised at once;
only the size is checked, never the sha256; a killed process can leave a lock with no timeout. Everything else
is huggingface_hub's: the URL, the HEAD metadata, the session and headers (token, proxy, endpoint), and at the
end its own cache placement (`hf_hub_download` finds our verified blob and links it into the snapshot).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePosixPath

import httpx2
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
from huggingface_hub import errors as hf_errors

from models.hub import library
from models.text import has_control
from models.errors import DownloadError, HubError
from models.hub.repos import RemoteFile, file_checksums
from models.hub.partial_lock import PartialLock
from models.hub.reach import require_hub
from models.paths import downloads_state_dir
from models.hub.transfer import (DownloadCancelled, DownloadPaused, Meter, Part, StopToken, Transfer,
                                  friendly_error)
from models.units import fmt_bytes

log = logging.getLogger(__name__)

# The stop signals live with the transfer they interrupt; callers import them from here with the rest of the API.


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


def safe_relative(filename: str) -> PurePosixPath:
    """A Hub file name as a path that stays inside its folder; refuses `..`, absolute paths and drive letters."""
    path = PurePosixPath(filename)
    if (not filename or "\\" in filename or "\0" in filename or path.is_absolute() or ".." in path.parts
            or (path.parts and ":" in path.parts[0])):
        raise DownloadError(f"Refusing the file name {filename!r}: it would leave the download folder.")
    if has_control(filename):  # an escape code in a name on disk would run in every terminal that lists it
        raise DownloadError(f"Refusing the file name {filename!r}: it holds control characters.")
    return path


def plan_download(repo_id: str, selector: str, *, revision: str | None = None, target_dir: Path | None = None,
                  token: str | bool | None = None) -> DownloadRequest:
    """The request for a quant label (Q4_K_M) or a file name of a repo, all shards included."""
    from models.hub.repos import repo_files

    repo = repo_files(repo_id, revision=revision, token=token)
    model = repo.find(selector)
    return DownloadRequest(repo_id, model.files, revision or "main", target_dir)


class _Runner:
    """One job: resolve, check disk, fetch each shard with resume and retries, verify, place."""

    def __init__(self, request: DownloadRequest, *, token: str | bool | None,
                 on_progress: Callable[[DownloadProgress], None] | None, stop: StopToken,
                 margin_bytes: int | None, backoff_s: float, max_retries: int, lock_timeout_s: float) -> None:
        self.request, self.token, self.on_progress, self.stop = request, token, on_progress, stop
        self.margin_bytes, self.lock_timeout_s = margin_bytes, lock_timeout_s
        self.transfer = Transfer(request.repo_id, token=token, stop=stop, backoff_s=backoff_s,
                                 max_retries=max_retries)
        self.commit: str | None = None
        self.index = 0
        self.current = request.files[0].filename if request.files else ""

    def emit(self, state: DownloadState, done: int, total: int | None, speed: float = 0.0,
             eta: float | None = None, message: str = "") -> None:
        if self.on_progress is not None:
            self.on_progress(DownloadProgress(self.current, done, total, speed, eta, state, self.index,
                                              len(self.request.files), message))

    def resolve(self) -> list[Part]:
        parts = []
        state_dir = downloads_state_dir(create=True)
        for remote in self.request.files:
            safe_relative(remote.filename)
            url = hf_hub_url(self.request.repo_id, remote.filename, revision=self.commit or self.request.revision)
            meta = self.transfer.retrying(f"HEAD {remote.filename}",
                                          lambda: get_hf_file_metadata(url, token=self.token))
            if meta.commit_hash is None or meta.etag is None or meta.size is None:
                raise DownloadError(f"{self.request.repo_id}/{remote.filename}: the server gave no commit, ETag or "
                                    "size; is HF_ENDPOINT a Hub?")
            self.commit = self.commit or meta.commit_hash
            key = hashlib.sha256(f"{self.request.repo_id}\0{remote.filename}\0{meta.etag}".encode()).hexdigest()[:32]
            parts.append(Part(remote, meta.location, meta.etag, meta.size, state_dir / f"{key}.part",
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

    def check_disk(self, parts: list[Part]) -> None:
        total = sum(p.size for p in parts)
        remaining = sum(max(0, p.size - (p.partial.stat().st_size if p.partial.exists() else 0)) for p in parts)
        margin = self.margin_bytes if self.margin_bytes is not None else max(256 << 20, total // 50)
        dest = self.request.target_dir or Path(constants.HF_HUB_CACHE)
        dest_probe = next((d for d in [dest, *dest.parents] if d.exists()), Path("/"))
        state_dir = downloads_state_dir(create=True)
        needs = [(state_dir, remaining)]
        if os.stat(dest_probe).st_dev != os.stat(state_dir).st_dev:
            needs.append((dest_probe, total))  # a move across file systems is a copy
        for folder, need in needs:
            free = shutil.disk_usage(folder).free
            if free < need + margin:
                raise DownloadError(
                    f"Not enough free disk in {folder}: the download needs {fmt_bytes(need)} plus a "
                    f"{fmt_bytes(margin)} margin, and {fmt_bytes(free)} is free. Free some space, or choose another "
                    "folder.")

    def fetch(self, part: Part, meter: Meter) -> str | None:
        """Bring the partial file to full size; returns its sha256 when the Hub gave one to check against."""
        hasher = self.transfer.fetch(part, meter, self.commit)
        if hasher is not None:
            self.emit(DownloadState.VERIFYING, meter.done, meter.total, message=f"sha256 of {part.remote.filename}")
        digest = hasher.hexdigest() if hasher is not None else None
        # The file on disk is what gets placed, so its size is checked too (the only check a mirror allows).
        on_disk = part.partial.stat().st_size if part.partial.exists() else 0
        if on_disk != part.size:
            part.partial.unlink(missing_ok=True)
            part.state.unlink(missing_ok=True)
            raise DownloadError(
                f"{part.remote.filename} is {on_disk} bytes on disk where the Hub says {part.size}: something else "
                "wrote to the partial file. It was not added to the library and was deleted; run the download again.")
        return digest

    def locks(self, parts: list[Part]) -> contextlib.ExitStack:
        """Each partial file owned by this job alone until it is placed (another process or job gets a clear no)."""
        stack = contextlib.ExitStack()
        try:
            for part in parts:
                stack.enter_context(PartialLock(part.partial.with_suffix(".lock"), timeout_s=self.lock_timeout_s,
                                                what=f"{self.request.repo_id}/{part.remote.filename}"))
        except BaseException:
            stack.close()
            raise
        return stack

    def verify(self, part: Part, digest: str | None) -> bool:
        if not part.remote.sha256 or digest is None:
            return False
        if digest != part.remote.sha256.lower():
            part.partial.unlink(missing_ok=True)
            part.state.unlink(missing_ok=True)
            raise DownloadError(
                f"{part.remote.filename} does not match the Hub's sha256 (expected {part.remote.sha256}, got "
                f"{digest}); it was not added to the library and the bad copy was deleted.")
        return True

    def place(self, part: Part) -> Path:
        if self.request.target_dir is not None:
            return library.adopt_into_folder(part.partial, self.request.target_dir, safe_relative(part.remote.filename))
        return library.adopt_into_hf_cache(part.partial, repo_id=self.request.repo_id, filename=part.remote.filename,
                                           etag=part.etag, commit=self.commit or "", revision=self.request.revision,
                                           token=self.token)

    def cached(self, part: Part) -> bool:
        """The HF cache already holds this exact blob (same ETag and size): nothing to fetch."""
        if self.request.target_dir is not None:
            return False
        blob = library.hf_blob_path(self.request.repo_id, part.etag)
        return blob.is_file() and blob.stat().st_size == part.size

    def run(self) -> DownloadResult:
        self.emit(DownloadState.RUNNING, 0, None, message="resolving")
        try:
            require_hub(f"Download of {self.request.repo_id}")  # at once, not after the retries of each HEAD
        except HubError as error:
            raise DownloadError(str(error)) from error
        try:
            parts = self.resolve()
        except (hf_errors.HfHubHTTPError, httpx2.HTTPError, hf_errors.OfflineModeIsEnabled) as error:
            raise friendly_error(self.request.repo_id, error) from error
        with self.locks(parts):
            return self.run_locked(parts)

    def run_locked(self, parts: list[Part]) -> DownloadResult:
        self.check_disk([p for p in parts if not self.cached(p)])
        total = sum(p.size for p in parts)
        done = sum(min(p.size, p.partial.stat().st_size) for p in parts if p.partial.exists())
        meter = Meter(lambda d, s, e: self.emit(DownloadState.RUNNING, d, total, s, e), total, done)
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
            raise friendly_error(self.request.repo_id, error) from error
        for part in parts:
            part.state.unlink(missing_ok=True)
        self.emit(DownloadState.DONE, total, total, message="verified" if verified else "unverified")
        return DownloadResult(paths, verified, self.commit, notes)



def download(request: DownloadRequest, *, token: str | bool | None = None,
             on_progress: Callable[[DownloadProgress], None] | None = None,
             stop: StopToken | threading.Event | None = None, margin_bytes: int | None = None,
             backoff_s: float = 1.0, max_retries: int = 5, lock_timeout_s: float = 3.0) -> DownloadResult:
    """Run one download to the end (blocking); raises DownloadPaused, DownloadCancelled or DownloadError.

    `stop`: a StopToken (pause or cancel), or a plain threading.Event whose set() means pause.
    `lock_timeout_s`: how long to wait for a file that another process (or job) is downloading before refusing.
    """
    token_obj = stop if isinstance(stop, StopToken) else StopToken(stop)
    runner = _Runner(request, token=token, on_progress=on_progress, stop=token_obj, margin_bytes=margin_bytes,
                     backoff_s=backoff_s, max_retries=max_retries, lock_timeout_s=lock_timeout_s)
    return runner.run()
