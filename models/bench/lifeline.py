"""In the worker: die with the parent (Linux's parent-death signal, and a watchdog on stdin everywhere)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
from typing import TextIO

log = logging.getLogger(__name__)

PARENT_ENV = "TOKENOMETER_PARENT_PID"  # the runner's pid, so a worker orphaned before prctl notices
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Ask Linux to SIGKILL this process when the thread that started it ends; False where there is no such call.

    A worker holding tens of GB must not outlive a `tokenometer bench` killed by SIGTERM, SIGHUP or SIGKILL."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    expected = os.environ.get(PARENT_ENV, "")
    if expected.isdigit() and os.getppid() != int(expected):  # the parent died before prctl: nobody would signal
        os._exit(1)
    return True


def watch_stdin(stream: TextIO) -> threading.Thread:
    """End the process when stdin reaches end of file: the runner keeps the pipe open while it lives, so EOF means
    it is gone (the portable counterpart of the parent-death signal). The thread sleeps in read(): no wake-ups."""
    def watch() -> None:
        try:
            while stream.read(65536):
                pass
        except (OSError, ValueError):
            pass
        os._exit(1)

    thread = threading.Thread(target=watch, name="parent-watchdog", daemon=True)
    thread.start()
    return thread
