"""Whether a file is in the page cache (mincore over a read-only mapping), so a load time says cold or warm."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

WARM_AT = 0.9  # at least this share cached: "warm"
COLD_AT = 0.1  # at most this share: "cold"; in between: "partial"
_PROT_READ, _MAP_SHARED = 0x1, 0x01
_MAP_FAILED = ctypes.c_void_p(-1).value


def cached_fraction(path: Path) -> float | None:
    """The share of the file's pages resident in the page cache (0..1), or None where mincore is not available.

    Mapping a file and asking mincore reads nothing from it, so the measurement does not warm the cache."""
    if sys.platform == "win32":  # no mincore; the load time is then unlabelled
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    except (OSError, AttributeError):
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return None
        addr = libc.mmap(None, size, _PROT_READ, _MAP_SHARED, fd, 0)
        if addr in (None, _MAP_FAILED):
            return None
        try:
            pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
            vec = ctypes.create_string_buffer(pages)
            if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                return None
            resident = sum(byte & 1 for byte in vec.raw[:pages])
            return resident / pages
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)


def page_cache_label(fraction: float | None) -> str:
    """"warm", "cold", "partial", or "" when unknown."""
    if fraction is None:
        return ""
    if fraction >= WARM_AT:
        return "warm"
    if fraction <= COLD_AT:
        return "cold"
    return "partial"
