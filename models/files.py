"""Atomic file writes: a file is either its old content or its complete new content, even after a power cut."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable; folders cannot be opened for fsync on Windows, where NTFS journals it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:  # some file systems (and Windows) refuse fsync on a folder; the data is synced
        log.debug("fsync of folder %s failed: %s", folder, error)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes, *, make_parents: bool = True) -> Path:
    """Write `data` to a temporary file beside `path`, fsync it, rename it over `path`, fsync the folder.

    A crash at any moment leaves either the old file or the new one, never half of either; the temporary file
    is removed on any error, and the OSError (ENOSPC, EROFS, EACCES ...) is raised for the caller to word.
    """
    target = Path(path)
    if make_parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def atomic_write_text(path: Path | str, text: str, *, encoding: str = "utf-8", make_parents: bool = True) -> Path:
    """atomic_write_bytes for text, written exactly as given (no newline translation)."""
    return atomic_write_bytes(path, text.encode(encoding), make_parents=make_parents)
