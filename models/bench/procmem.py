"""A process's memory as Tokenometer reports it: private (RssAnon), file-backed (RssFile) and peak (VmHWM)."""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_KEYS = {"RssAnon": "rss_anon", "RssFile": "rss_file", "VmHWM": "peak", "VmRSS": "rss"}


@dataclass(frozen=True)
class ProcessMemory:
    """Bytes. On systems without /proc, rss_anon is the resident size and rss_file is 0."""

    rss_anon: int = 0
    rss_file: int = 0
    peak: int = 0
    rss: int = 0

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def _from_proc(pid: int | str) -> ProcessMemory | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in _KEYS:
            parts = rest.split()
            # /proc reports these in kB (KiB), always with the unit.
            if parts and parts[0].isdigit():
                values[_KEYS[key]] = int(parts[0]) * 1024
    if not values:
        return None
    return ProcessMemory(**values)


def _from_psutil(pid: int) -> ProcessMemory | None:
    import psutil

    try:
        info = psutil.Process(pid).memory_info()
    except (psutil.Error, OSError):
        return None
    # Windows reports the peak working set; elsewhere without /proc the peak is not known.
    peak = int(getattr(info, "peak_wset", 0) or 0)
    return ProcessMemory(rss_anon=int(info.rss), rss_file=0, peak=max(peak, int(info.rss)), rss=int(info.rss))


def data_size() -> int | None:
    """This process's data segment (VmData, what RLIMIT_DATA counts), bytes; None without /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_memory(pid: int | None = None) -> ProcessMemory | None:
    """Memory of `pid` (default: this process), or None when the process is gone."""
    if sys.platform.startswith("linux"):
        found = _from_proc("self" if pid is None else pid)
        if found is not None or pid is not None:
            return found
    import os

    return _from_psutil(os.getpid() if pid is None else pid)
