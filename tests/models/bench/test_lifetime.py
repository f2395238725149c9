"""The worker never outlives `tokenometer bench`: SIGTERM/SIGHUP cancel, SIGKILL takes the worker along."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from models.bench.spec import BenchJob, BenchTest

ROOT = Path(__file__).resolve().parents[3]


def _gone(pid: int, *, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


def _bench_until_generating(starter_model: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-m", "models.cli", "bench", str(starter_model), "-p", "16", "-n", "64",
                             "-r", "200", "-t", "1", "--progress", "--no-save"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "tg64 rep" in line:  # the worker is in the middle of the timed generation test
            break
    workers = psutil.Process(proc.pid).children()
    assert len(workers) == 1
    return proc, workers[0].pid


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_cancels_and_ends_the_worker(starter_model: Path, sig: signal.Signals) -> None:
    proc, worker = _bench_until_generating(starter_model)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert "cancelling" in err and "pp16" in out and "cancelled" in out  # what finished is still printed
    assert _gone(worker)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_sigkill_of_the_cli_takes_the_worker_along(starter_model: Path) -> None:
    proc, worker = _bench_until_generating(starter_model)
    proc.kill()  # no handler runs: only the kernel's parent-death signal (and the stdin watchdog) can act
    proc.communicate(timeout=60)
    assert _gone(worker)


def test_worker_ends_when_its_stdin_closes(make_job: Callable[..., BenchJob]) -> None:
    # The portable watchdog: the runner holds the worker's stdin open; its end means the runner is gone.
    job = make_job(tests=(BenchTest(0, 64),), repetitions=500)
    worker = subprocess.Popen([sys.executable, "-m", "models.bench.worker"], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write(json.dumps(job.to_json()) + "\n")
    worker.stdin.flush()
    for line in worker.stdout:
        if '"sample"' in line:
            break
    worker.stdin.close()
    assert worker.wait(timeout=30) == 1
