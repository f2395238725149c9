"""Bad input and faults: each gives failed (or cancelled) rows with a clear message, and the caller lives on."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from models.bench.events import BenchEvent
from models.bench.runner import BenchRunner
from models.bench.spec import BenchJob, BenchSweep, BenchTest
from models.bench.worker import FAULT_ENV
from models.errors import BenchmarkError


def _assert_no_numbers(results: list) -> None:
    for result in results:
        assert result.avg_ts == 0 and result.avg_ns == 0 and result.samples_ns == [] and result.samples_ts == []


def test_missing_file(make_job: Callable[..., BenchJob], tmp_path: Path) -> None:
    results = BenchRunner().run([make_job(tmp_path / "nowhere.gguf")])
    assert [r.status for r in results] == ["failed", "failed"]
    assert results[0].error.startswith("Model file not found:") and "nowhere.gguf" in results[0].error
    _assert_no_numbers(results)


def test_not_a_gguf_file(make_job: Callable[..., BenchJob], tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("these are notes, not a model")
    results = BenchRunner().run([make_job(path)])
    assert results[0].status == "failed" and "is not a GGUF model file" in results[0].error
    _assert_no_numbers(results)


def test_truncated_gguf(make_job: Callable[..., BenchJob], truncated_model: Path) -> None:
    results = BenchRunner().run([make_job(truncated_model)])
    assert results[0].status == "failed"
    assert results[0].error.startswith("llama.cpp could not load truncated.gguf")
    assert "Last lines of the log" in results[0].error  # llama.cpp's own reason comes along
    _assert_no_numbers(results)


def test_model_llama_cpp_refuses(make_job: Callable[..., BenchJob], unknown_arch_model: Path) -> None:
    results = BenchRunner().run([make_job(unknown_arch_model)])
    assert results[0].status == "failed"
    assert "could not load unknown-arch.gguf" in results[0].error
    assert "tokenometer-test-arch" in results[0].error  # llama.cpp names the architecture it does not know
    _assert_no_numbers(results)


def test_depth_beyond_training_context(make_job: Callable[..., BenchJob]) -> None:
    job = make_job(tests=(BenchTest(16, 0, n_depth=10_000_000), BenchTest(16, 0)), repetitions=1)
    results = BenchRunner().run([job])
    assert results[0].status == "failed" and "beyond the model's training context" in results[0].error
    _assert_no_numbers(results[:1])
    assert results[1].status == "ok"  # one impossible test does not sink the others


@pytest.mark.parametrize(("options", "message"), [
    ({"n_threads": 0}, "threads must be at least 1"),
    ({"n_batch": 32, "n_ubatch": 64}, "n_ubatch (64) cannot be larger than n_batch (32)"),
    ({"type_k": "q7"}, "Unknown KV cache type"),
])
def test_impossible_parameters_never_start_a_worker(make_job: Callable[..., BenchJob], options: dict,
                                                    message: str) -> None:
    events: list[BenchEvent] = []
    results = BenchRunner(on_event=lambda _j, e: events.append(e)).run([make_job(**options)])
    assert all(r.status == "failed" and message in r.error for r in results)
    assert not any(e.kind == "started" for e in events)


def test_sweep_validation_names_the_parameter(starter_model: Path) -> None:
    with pytest.raises(BenchmarkError, match="threads must be at least 1"):
        BenchSweep(models=[starter_model], n_threads=[0]).jobs()
    with pytest.raises(BenchmarkError, match="n_ubatch"):
        BenchSweep(models=[starter_model], n_batch=[128], n_ubatch=[512]).jobs()


def _kill_on_first_sample(sig: int) -> tuple[BenchRunner, list[BenchEvent]]:
    events: list[BenchEvent] = []
    pid: dict[str, int] = {}

    def on_event(_job: BenchJob, event: BenchEvent) -> None:
        events.append(event)
        if event.kind == "started":
            pid["worker"] = event.data["pid"]
        if event.kind == "sample" and len([e for e in events if e.kind == "sample"]) == 1:
            os.kill(pid["worker"], sig)

    return BenchRunner(on_event=on_event), events


def test_worker_killed_with_sigkill(make_job: Callable[..., BenchJob]) -> None:
    runner, events = _kill_on_first_sample(signal.SIGKILL)
    results = runner.run([make_job(repetitions=3)])
    assert [r.status for r in results] == ["failed", "failed"]
    assert "was killed (SIGKILL)" in results[0].error and "(during pp16)" in results[0].error
    assert "Last lines of the log" in results[0].error
    _assert_no_numbers(results)
    assert [e.kind for e in events][-1] == "finished" and events[-1].data["ok"] is False
    # The same runner goes on to run the next job normally.
    again = runner.run([make_job(tests=(BenchTest(8, 0),), repetitions=1)])
    assert again[0].status == "ok"


@pytest.mark.parametrize(("fault", "words"), [("segfault", "SIGSEGV"), ("abort", "SIGABRT"),
                                              ("exit", "exited with code 3")])
def test_worker_crash(make_job: Callable[..., BenchJob], monkeypatch: pytest.MonkeyPatch, fault: str,
                      words: str) -> None:
    monkeypatch.setenv(FAULT_ENV, fault)  # the real worker really dies this way after its first sample
    results = BenchRunner().run([make_job()])
    assert [r.status for r in results] == ["failed", "failed"]
    assert words in results[0].error
    _assert_no_numbers(results)
    if fault == "segfault":
        assert "Fatal Python error" in results[0].error or "Segmentation fault" in results[0].error


def test_cancel_from_another_thread(make_job: Callable[..., BenchJob]) -> None:
    first_sample = threading.Event()
    pids: list[int] = []

    def on_event(_job: BenchJob, event: BenchEvent) -> None:
        if event.kind == "started":
            pids.append(event.data["pid"])
        if event.kind == "sample":
            first_sample.set()

    runner = BenchRunner(on_event=on_event)
    jobs = [make_job(repetitions=50), make_job()]
    out: dict[str, list] = {}
    thread = threading.Thread(target=lambda: out.setdefault("results", runner.run(jobs)))
    thread.start()
    assert first_sample.wait(120)
    runner.cancel()
    thread.join(120)
    assert not thread.is_alive()
    results = out["results"]
    assert [r.status for r in results] == ["cancelled"] * 4
    assert results[2].error == "Cancelled before it started."
    _assert_no_numbers(results)
    assert len(pids) == 1 and not (psutil.pid_exists(pids[0]) and psutil.Process(pids[0]).status() != "zombie")


def test_cancel_from_an_event_keeps_finished_tests(make_job: Callable[..., BenchJob]) -> None:
    runner_box: list[BenchRunner] = []

    def on_event(_job: BenchJob, event: BenchEvent) -> None:
        if event.kind == "sample" and event.data["test"] == "tg32":
            runner_box[0].cancel()

    runner = BenchRunner(on_event=on_event)
    runner_box.append(runner)
    results = runner.run([make_job(tests=(BenchTest(16, 0), BenchTest(0, 32)), repetitions=3)])
    assert results[0].status == "ok" and len(results[0].samples_ns) == 3
    assert results[1].status == "cancelled"
    # A cancel ends one run; the runner is usable again.
    assert runner.run([make_job(tests=(BenchTest(8, 0),), repetitions=1)])[0].status == "ok"
