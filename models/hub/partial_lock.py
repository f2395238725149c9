"""One process per partial file: an OS file lock with a timeout that names the process holding it."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from types import TracebackType

from models.errors import DownloadError

log = logging.getLogger(__name__)

# Windows locks byte ranges; the lock sits far past the pid so another process can still read who holds it.
_WIN_LOCK_OFFSET = 1 << 20


def _try_lock(fd: int) -> bool:
    """Take the lock without waiting; False when another open file (any process) holds it."""
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    # flock, not fcntl/lockf: its lock belongs to the open file, so two threads of one process exclude each
    # other too (the app's queue and a second job for the same file), and it ends when the process dies.
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii", errors="replace").split("\0")[0].strip()
    except OSError:
        return "another process"
    if text == str(os.getpid()):
        return "another download in this process"
    return f"process {text}" if text.isdigit() else "another process"


class PartialLock:
    """Exclusive ownership of one partial file for as long as it is held (a context manager).

    The lock file sits beside the partial and holds the owner's pid. The OS drops the lock when its owner dies,
    so a killed download never blocks the next one (huggingface_hub's own lock has no timeout and can).
    """

    def __init__(self, path: Path, *, what: str, timeout_s: float = 5.0) -> None:
        self.path, self.what, self.timeout_s = path, what, timeout_s
        self._fd: int | None = None

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if _try_lock(fd):
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if same:
                    os.ftruncate(fd, 0)
                    os.lseek(fd, 0, os.SEEK_SET)
                    os.write(fd, f"{os.getpid()}\0".encode())
                    self._fd = fd
                    return
                # The previous owner removed the file between our open and our lock: lock the new one.
                _unlock(fd)
                os.close(fd)
                continue
            os.close(fd)
            if time.monotonic() >= deadline:
                raise DownloadError(
                    f"{self.what} is already being downloaded by {_holder(self.path)}; this download was not started. "
                    "Wait for that one to finish (the file is then in the library), or stop it first.")
            time.sleep(0.1)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            # Removed while still locked, so a waiting process notices (see acquire) instead of locking a
            # file that no longer has a name.
            self.path.unlink(missing_ok=True)
        except OSError:  # Windows: an open file cannot be removed; the next owner reuses it
            pass
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> PartialLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
