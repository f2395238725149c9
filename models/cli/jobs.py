"""Run a long job off the main thread so Ctrl-C reaches the CLI, which then cancels the job and waits for it."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def run_cancellable(work: Callable[[], Any], *, cancel: Callable[[], None], name: str = "tokenometer-job",
                    message: str = "cancelling ...") -> bool:
    """Run `work` in a thread; on Ctrl-C (or any KeyboardInterrupt, e.g. raised by a SIGTERM handler) print
    `message`, call `cancel` and keep waiting until `work` returns. Every CLI command that runs a long job uses
    this one helper (bench, download, batched, load).

    Returns True when Ctrl-C was pressed. An exception raised by `work` is raised again here.
    """
    outcome: dict[str, BaseException] = {}
    done = threading.Event()

    def target() -> None:
        try:
            work()
        except BaseException as error:  # handed to the main thread
            outcome["error"] = error
        finally:
            done.set()

    threading.Thread(target=target, name=name, daemon=True).start()
    cancelled = False
    while not done.is_set():
        try:
            # Asleep until the job ends: on POSIX a lock wait that signals interrupt, so no 100 ms wake-ups while
            # a benchmark worker times its reps; elsewhere a slow poll so Ctrl-C is still seen. Not thread.join:
            # Ctrl-C during join can leave a running thread marked finished.
            done.wait(None if os.name == "posix" else 0.5)
        except KeyboardInterrupt:
            if not cancelled and message:
                print(f"\n{message}", file=sys.stderr, flush=True)
            cancelled = True
            cancel()
    if "error" in outcome:
        raise outcome["error"]
    return cancelled
