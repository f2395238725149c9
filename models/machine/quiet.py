"""Whether other programs left the CPU alone while something was measured: the window a peak test waits for."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

QUIET_CORES = 0.2  # other programs using less CPU than this over a stretch: what runs then runs undisturbed
QUIET_STRETCH = 0.25  # seconds (0.5 s kept most windows under a bursty neighbour running to their cap)


def _cpu_busy() -> tuple[float, float] | None:
    """(CPU seconds the whole machine was busy, steal included; CPU seconds of this process) or None."""
    import psutil

    try:
        t = psutil.cpu_times()
        own = psutil.Process().cpu_times()
    except (OSError, psutil.Error) as error:
        log.debug("CPU times not readable: %s", error)
        return None
    busy = sum(getattr(t, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))
    return busy, own.user + own.system


class QuietWatch:
    """Whether other programs (and a virtual machine's host, as steal) left the CPU alone for a stretch of a
    measuring window: a measurement goes on until they did, so its best pass is an undisturbed one."""

    def __init__(self, min_seconds: float) -> None:
        self.stretch_len = min(QUIET_STRETCH, max(min_seconds / 3, 0.1))
        self.stretch = time.perf_counter()
        self.busy = _cpu_busy()
        # No window asked for, or CPU times not readable: nothing to wait for.
        self.quiet = min_seconds == 0 or self.busy is None
        self.least_others = -1.0  # the least CPU others used over a stretch, in cores; -1: no stretch ended

    def tick(self) -> bool:
        """Called after each pass; True once a quiet stretch has been seen."""
        now = time.perf_counter()
        if self.busy is not None and now - self.stretch >= self.stretch_len:
            after = _cpu_busy()
            if after is not None:
                others = max((after[0] - self.busy[0]) - (after[1] - self.busy[1]), 0.0) / (now - self.stretch)
                self.least_others = others if self.least_others < 0 else min(self.least_others, others)
                self.quiet = self.quiet or others < QUIET_CORES
            self.stretch, self.busy = now, after
        return self.quiet
