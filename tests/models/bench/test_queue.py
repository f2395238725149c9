"""The core benchmark queue, driving the real runner and worker: one at a time, cancel, remove, clear."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from models.bench.events import Progress, Result, Sample, TypedEvent
from models.bench.queue import BenchItem, BenchQueue, BenchState, Change
from models.bench.spec import BenchJob, BenchTest
from models.errors import BenchmarkError


class Heard:
    """Everything the queue tells, in order, from whichever thread told it."""

    def __init__(self) -> None:
        self.changes: list[tuple[Change, BenchItem, TypedEvent | None]] = []
        self.lock = threading.Lock()

    def __call__(self, change: Change, item: BenchItem, event: TypedEvent | None) -> None:
        with self.lock:
            self.changes.append((change, item, event))

    def of(self, item: BenchItem) -> list[tuple[Change, TypedEvent | None]]:
        with self.lock:
            return [(c, e) for c, i, e in self.changes if i is item]


def _wait(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout * 20)):
        if predicate():
            return
        done.wait(0.05)
    raise AssertionError("timed out")


def test_jobs_run_one_at_a_time_and_say_where_they_are(make_job: Callable[..., BenchJob]) -> None:
    heard = Heard()
    queue = BenchQueue(listener=heard)
    first, second = queue.enqueue([make_job(n_gpu_layers=0), make_job(n_gpu_layers=0, n_threads=2)])
    assert first.state == BenchState.QUEUED == "queued" and str(first.state) == "queued"
    running_together: list[bool] = []

    def both_finished() -> bool:
        running_together.append(first.state == second.state == BenchState.RUNNING)
        return all(i.state.finished for i in (first, second))

    _wait(both_finished)
    assert queue.wait(60)
    assert not any(running_together)
    assert first.state == second.state == BenchState.DONE and first.progress == "done"
    assert [r.test for r in first.results] == ["pp16", "tg4"]
    changes = [c for c, _ in heard.of(first)]
    assert changes[0] == Change.ADDED and changes[-1] == Change.FINISHED
    assert changes.count(Change.RESULT) == 2 and changes.count(Change.SAMPLE) == 4
    words = [e.text for c, e in heard.of(first) if isinstance(e, Progress)]
    # Counted from 1, as the CLI prints them.
    assert "pp16 rep 1/2" in words and "tg4 rep 2/2" in words and not any("rep 0/" in w for w in words)
    samples = [e for _, e in heard.of(first) if isinstance(e, Sample)]
    assert all(s.ts > 0 for s in samples)
    assert all(isinstance(e, Result) for c, e in heard.of(first) if c == Change.RESULT)
    queue.close()


def test_cancel_stops_the_running_job_only_and_remove_takes_queued_ones_off(
        make_job: Callable[..., BenchJob]) -> None:
    heard = Heard()
    queue = BenchQueue(listener=heard)
    slow = make_job(tests=(BenchTest(0, 256),), repetitions=5, n_gpu_layers=0)
    first, second, third = queue.enqueue([slow, make_job(n_gpu_layers=0), make_job(n_gpu_layers=0)])
    _wait(lambda: first.phase in ("rep", "warmup"))
    with pytest.raises(BenchmarkError, match="cancel it first"):
        queue.remove(first)
    queue.remove(third)
    assert third not in queue.items and third.state == BenchState.CANCELLED
    assert (Change.REMOVED, None) in heard.of(third)
    assert queue.cancel_running() is first
    assert queue.wait(60)
    assert first.state == BenchState.CANCELLED
    assert second.state == BenchState.DONE  # the queue went on after the cancelled job
    assert all(r.status == "cancelled" for r in first.results)
    assert [i.state for i in queue.clear_finished()] == [BenchState.CANCELLED, BenchState.DONE]
    assert queue.items == []
    queue.close()


def test_clear_queue_leaves_the_running_job_and_close_stops_everything(make_job: Callable[..., BenchJob]) -> None:
    queue = BenchQueue()
    slow = make_job(tests=(BenchTest(0, 256),), repetitions=5, n_gpu_layers=0)
    running, *waiting = queue.enqueue([slow, make_job(n_gpu_layers=0), make_job(n_gpu_layers=0)])
    _wait(lambda: running.state == BenchState.RUNNING)
    assert queue.clear_queue() == waiting
    assert queue.items == [running] and queue.pending() == 1
    queue.close(timeout=30)
    assert running.state == BenchState.CANCELLED
    with pytest.raises(BenchmarkError, match="closed"):
        queue.enqueue([make_job()])


def test_a_store_that_cannot_be_opened_fails_its_item_in_words_and_the_queue_goes_on(
        make_job: Callable[..., BenchJob], tmp_path: Path) -> None:
    from models.results.store import ResultsStore, record_events

    broken = tmp_path / "results.db"
    broken.write_bytes(b"this is not an SQLite database" * 100)
    paths = [broken, tmp_path / "good.db"]

    def recorder() -> tuple[Callable[..., None], Callable[[], None]]:
        store = ResultsStore(paths.pop(0))  # the first job meets the broken file, the second a fresh one
        return record_events(store, machine={"machine_id": "m1", "cpu": "Test CPU", "gpus": []}), store.close

    queue = BenchQueue(recorder=recorder)
    bad, good = queue.enqueue([make_job(n_gpu_layers=0), make_job(n_gpu_layers=0)])
    assert queue.wait(60)
    assert bad.state == BenchState.FAILED and "results.db" in bad.message, bad.message
    assert "Traceback" in bad.detail
    assert good.state == BenchState.DONE
    with ResultsStore(tmp_path / "good.db") as store:
        assert sorted(run.result.test for run in store.list_runs()) == ["pp16", "tg4"]
    queue.close()
