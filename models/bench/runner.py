"""The runner: starts one worker process per job, relays its events, cancels, survives crashes.

While a job runs the runner sleeps until the worker says something: no polling, so the timed repetitions run alone.
The worker reports its own memory between repetitions (models.bench.procmem; the peak is the kernel's VmHWM)."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO, Any

from models.child import child_env
from models.bench.events import BenchEvent
from models.bench.lifeline import PARENT_ENV
from models.bench.record import blank_result
from models.bench.spec import BenchJob, BenchResult, BenchSweep, check_job

log = logging.getLogger(__name__)

EventCallback = Callable[[BenchJob, BenchEvent], None]

_KNOWN_BEFORE_TESTS = ("build_commit", "build_number", "cpu_info", "gpu_info", "backends", "model_type",
                       "model_size", "model_n_params", "system_info", "llama_cpp_python_version", "load_ms",
                       "load_page_cache", "load_cached_fraction", "use_mmap")
_KILL = getattr(signal, "SIGKILL", signal.SIGTERM)  # Windows has no SIGKILL; there both end in TerminateProcess
_TAIL_IN_ERROR = 15  # log lines quoted in a failed result's message
_SIGNAL_REASONS = {
    "SIGKILL": "was killed (SIGKILL); the system may have run out of memory, or another program ended it",
    "SIGSEGV": "crashed (SIGSEGV, a segmentation fault in native code)",
    "SIGABRT": "aborted (SIGABRT); llama.cpp stops this way on a failed check or when memory runs out",
    "SIGBUS": "crashed (SIGBUS); the model file may have changed or been truncated while mapped",
    "SIGTERM": "was terminated (SIGTERM)",
    "SIGILL": "crashed (SIGILL); llama.cpp was built for CPU instructions this machine lacks",
    "SIGFPE": "crashed (SIGFPE, an arithmetic fault in native code)",
}


def death_message(returncode: int) -> str:
    """What a worker's exit status means, in words."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"The benchmark worker {_SIGNAL_REASONS.get(name, f'died from {name}')}."
    return f"The benchmark worker exited with code {returncode} before it finished."


class _Worker:
    """One running worker process and the threads that read its pipes."""

    def __init__(self, command: list[str], job: BenchJob, tail: deque[str], tail_lock: threading.Lock) -> None:
        # The worker checks it is still ours after asking for the death signal.
        env = child_env(extra={PARENT_ENV: str(os.getpid())})
        kwargs: dict[str, Any] = {}
        if os.name == "posix":
            # Own session and process group: Ctrl-C in a terminal reaches the parent only, which then cancels
            # cleanly; a cancel ends the whole group.
            kwargs["start_new_session"] = True
        else:
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, text=True, encoding="utf-8",
                                     errors="replace", bufsize=1, **kwargs)
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._tail, self._tail_lock = tail, tail_lock
        assert self.proc.stdin is not None and self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [threading.Thread(target=self._read_stdout, args=(self.proc.stdout,), daemon=True),
                         threading.Thread(target=self._read_stderr, args=(self.proc.stderr,), daemon=True)]
        for thread in self._threads:
            thread.start()
        try:
            import json

            # One line, and the pipe stays open: the worker treats its end as this process's death.
            self.proc.stdin.write(json.dumps(job.to_json()) + "\n")
            self.proc.stdin.flush()
        except OSError:  # the worker died before reading its job; its exit status tells why
            pass

    def signal(self, sig: int) -> None:
        """Send `sig` to the worker's process group (POSIX) or the worker."""
        if self.proc.poll() is not None:
            return
        try:
            if os.name == "posix":
                os.killpg(self.proc.pid, sig)
            elif sig == _KILL:
                self.proc.kill()
            else:
                self.proc.terminate()
        except OSError:
            pass

    def close_stdin(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except (OSError, AssertionError):
            pass

    def _read_stdout(self, stream: IO[str]) -> None:
        for line in stream:
            event = BenchEvent.from_line(line)
            if event is None:
                self.add_tail(line.rstrip())
            else:
                self.queue.put(("event", event))
        self.queue.put(("eof", None))

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            self.add_tail(line.rstrip())
            log.debug("worker %s stderr: %s", self.proc.pid, line.rstrip())

    def add_tail(self, line: str) -> None:
        if line.strip():
            with self._tail_lock:
                self._tail.append(line)

    def join_readers(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)


class BenchRunner:
    """Runs jobs one at a time, each in its own worker process; blocking `run`, thread-safe `cancel`."""

    def __init__(self, *, on_event: EventCallback | None = None, python: str = sys.executable,
                 kill_grace_s: float = 3.0, worker_args: Sequence[str] = ()) -> None:
        self.on_event = on_event
        self.python = python
        self.kill_grace_s = kill_grace_s
        self.worker_args = tuple(worker_args)  # e.g. ("--perf",) for llama.cpp's own timers in sample events
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._worker: _Worker | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Stop the running job (terminate, then kill after a grace period) and skip the rest. Any thread."""
        self._cancel.set()
        with self._lock:
            worker = self._worker
        if worker is not None:
            worker.signal(signal.SIGTERM)
            worker.queue.put(("cancel", None))  # wakes the relay loop, which kills after the grace period

    def run(self, jobs: Sequence[BenchJob]) -> list[BenchResult]:
        """Run every job in order; one BenchResult per job and test, failed and cancelled ones included."""
        results: list[BenchResult] = []
        try:
            for job in jobs:
                if self._cancel.is_set():
                    rows = [blank_result(job, t, status="cancelled", error="Cancelled before it started.")
                            for t in job.tests]
                    for row in rows:
                        self._emit(job, BenchEvent("result", {"result": row.to_json()}))
                    self._emit(job, BenchEvent("finished", {"ok": False, "cancelled": True}))
                    results += rows
                    continue
                results += self._run_job(job)
        finally:
            # A cancel applies to one run; the runner can be used again afterwards.
            self._cancel.clear()
        return results

    def _emit(self, job: BenchJob, event: BenchEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(job, event)
        except Exception:  # a broken listener must not leave a worker running unattended
            log.exception("on_event raised for a %s event", event.kind)

    def _run_job(self, job: BenchJob) -> list[BenchResult]:
        problem = check_job(job)
        if problem:
            rows = self._fill(job, [], status="failed", error=problem)
            self._emit(job, BenchEvent("finished", {"ok": False}))
            return rows
        tail: deque[str] = deque(maxlen=60)
        tail_lock = threading.Lock()
        command = [self.python, "-m", "models.bench.worker", *self.worker_args]
        try:
            worker = _Worker(command, job, tail, tail_lock)
        except OSError as error:
            rows = self._fill(job, [], status="failed", error=f"Cannot start the benchmark worker: {error}")
            self._emit(job, BenchEvent("finished", {"ok": False}))
            return rows
        with self._lock:
            self._worker = worker
        watch = _watch(worker.proc.pid)  # run conditions, sampled here so the worker stays lean
        predictions: dict[str, Any] = {}  # the bandwidth, history and headers the speed predictions share
        if self._cancel.is_set():  # cancelled between the check above and the start
            self.cancel()
        received: list[BenchResult] = []
        failure: dict[str, Any] | None = None
        finished = False
        cancel_deadline: float | None = None
        try:
            while True:
                if self._cancel.is_set():
                    now = time.monotonic()
                    cancel_deadline = cancel_deadline or now + self.kill_grace_s
                    if now >= cancel_deadline:
                        worker.signal(_KILL)
                try:
                    # Asleep until the worker writes, ends, or a cancel arrives; after a cancel, until the
                    # grace period is over.
                    timeout = None if cancel_deadline is None else max(0.0, cancel_deadline - time.monotonic())
                    kind, payload = worker.queue.get(timeout=timeout)
                except queue.Empty:
                    continue
                if kind == "cancel":
                    continue
                if kind == "eof":
                    break
                event: BenchEvent = payload
                if event.kind == "log" and event.data.get("source") == "llama.cpp":
                    worker.add_tail(str(event.data.get("message", "")))
                elif event.kind == "progress" and watch is not None and event.data.get("test") \
                        and event.data.get("test") != watch.current and event.data.get("phase") != "done":
                    watch.begin(str(event.data["test"]))
                elif event.kind == "result":
                    if watch is not None:
                        _assess(event.data["result"], watch)
                    _predict(event.data["result"], predictions)
                    received.append(BenchResult.from_json(event.data["result"]))
                elif event.kind == "failure":
                    failure = event.data
                elif event.kind == "finished":
                    # Held back: "finished" is always a job's last event, after any rows the runner adds.
                    finished = True
                    continue
                self._emit(job, event)
        finally:
            if watch is not None:
                watch.stop()
            returncode = self._reap(worker)
            with self._lock:
                self._worker = None
        with tail_lock:
            log_tail = list(tail)
        rows = self._rows(job, received, failure, finished, returncode, log_tail)
        ok = all(row.status == "ok" for row in rows)
        self._emit(job, BenchEvent("finished", {"ok": ok, **({"cancelled": True} if self._cancel.is_set() else {})}))
        return rows

    def _rows(self, job: BenchJob, received: list[BenchResult], failure: dict[str, Any] | None, finished: bool,
              returncode: int, log_tail: list[str]) -> list[BenchResult]:
        if len(received) >= len(job.tests):
            return received[:len(job.tests)]
        if self._cancel.is_set():
            return self._fill(job, received, status="cancelled", error="Cancelled.")
        if failure is not None:
            message = str(failure.get("message") or "The benchmark failed.")
            lines = [str(x) for x in failure.get("log_tail") or []] or log_tail
            return self._fill(job, received, status="failed", error=_with_tail(message, lines))
        message = death_message(returncode) if returncode != 0 or not finished else \
            "The benchmark worker stopped without reporting every test."
        current = job.tests[len(received)].name
        self._emit(job, BenchEvent("failure", {"message": message, "detail": f"during {current}",
                                               "log_tail": log_tail}))
        return self._fill(job, received, status="failed",
                          error=_with_tail(f"{message} (during {current})", log_tail))

    def _reap(self, worker: _Worker) -> int:
        """Wait for the worker to end (terminating, then killing it if it will not) and return its exit code."""
        proc = worker.proc
        try:
            # Its output has ended; a healthy worker is only freeing the model now.
            return proc.wait(timeout=self.kill_grace_s if self._cancel.is_set() else 10 * self.kill_grace_s)
        except subprocess.TimeoutExpired:
            worker.signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=self.kill_grace_s)
        except subprocess.TimeoutExpired:
            worker.signal(_KILL)
            return proc.wait()
        finally:
            worker.close_stdin()
            worker.join_readers(1.0)

    def _fill(self, job: BenchJob, received: list[BenchResult], *, status: str, error: str) -> list[BenchResult]:
        """The received rows, then one failed or cancelled row per test that has none (announced as events)."""
        rows = list(received)
        # What the worker learnt about the model and build still describes the rows it could not finish.
        known = {name: getattr(received[0], name) for name in _KNOWN_BEFORE_TESTS} if received else {}
        for test in job.tests[len(received):]:
            row = blank_result(job, test, status=status, error=error)
            for name, value in known.items():
                setattr(row, name, value)
            self._emit(job, BenchEvent("result", {"result": row.to_json()}))
            rows.append(row)
        return rows


def _watch(pid: int) -> Any:
    """A started ConditionWatch for the worker, or None when it cannot sample (the run goes on without it)."""
    try:
        from models.bench.trust.conditions import ConditionWatch

        watch = ConditionWatch(pid)
        watch.start()
        return watch
    except Exception as error:  # noqa: BLE001 - conditions are extra; the measurement must not depend on them
        log.warning("Run conditions not recorded: %s", error)
        return None


def _assess(row: dict[str, Any], watch: Any) -> None:
    """Add the test's conditions and trust label to a worker's result row (before it is emitted and stored)."""
    try:
        from models.bench.trust.labels import assess

        conditions = watch.finish(str(row.get("test", "")))
        row["conditions"] = conditions
        if row.get("status") == "ok":
            label, reasons = assess(row, conditions)
            row["trust"], row["trust_reasons"] = label, "; ".join(reasons)
    except Exception as error:  # noqa: BLE001
        log.warning("Run conditions not assessed: %s", error)


def _predict(row: dict[str, Any], cache: dict[str, Any]) -> None:
    """Store the speed predicted for a generation result beside it (predicted vs measured, learned later)."""
    try:
        from models.fit.here import result_prediction

        estimate = result_prediction(row, cache=cache)
        if estimate:
            row["speed_estimate"] = estimate
    except Exception as error:  # noqa: BLE001 - a prediction must never cost the measurement
        log.warning("No speed prediction stored: %s", error)


def _with_tail(message: str, lines: Sequence[str]) -> str:
    if not lines:
        return message
    shown = list(lines[-_TAIL_IN_ERROR:])
    # A crash report is quoted from its first line: Python's names the fault, then one traceback per thread.
    fatal = [i for i, line in enumerate(lines) if line.startswith("Fatal Python error")]
    if fatal and len(lines) - fatal[-1] > _TAIL_IN_ERROR:
        shown = list(lines[fatal[-1]:fatal[-1] + 2 * _TAIL_IN_ERROR])
    return message + "\nLast lines of the log:\n" + "\n".join(shown)


def run_sweep(sweep: BenchSweep, *, on_event: EventCallback | None = None) -> list[BenchResult]:
    """Validate the sweep and run all its jobs with a new runner (blocking)."""
    return BenchRunner(on_event=on_event).run(sweep.jobs())
