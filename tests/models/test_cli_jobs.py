"""The one Ctrl-C-safe job thread every long CLI command uses (bench, download, batched, load)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from models.cli.jobs import run_cancellable


def test_ctrl_c_cancels_the_job_and_waits_for_it(capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()
    finished: list[str] = []

    def work() -> None:
        # A job that only ends when cancelled, like a benchmark worker between reps.
        assert stop.wait(20), "the job was never cancelled"
        finished.append("done")

    # A real SIGINT to this process, delivered to the main thread while it waits, as Ctrl-C in a terminal is.
    threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    assert run_cancellable(work, cancel=stop.set, name="test-job") is True
    assert finished == ["done"]  # it returned only after the job itself ended
    assert "cancelling ..." in capsys.readouterr().err


def test_the_jobs_error_is_raised_in_the_caller_and_a_quiet_cancel_prints_nothing(
        capsys: pytest.CaptureFixture[str]) -> None:
    def work() -> None:
        raise ValueError("the job failed")

    with pytest.raises(ValueError, match="the job failed"):
        run_cancellable(work, cancel=lambda: None, message="")
    assert run_cancellable(lambda: None, cancel=lambda: None) is False
    assert capsys.readouterr().err == ""
