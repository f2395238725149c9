"""Benchmark page: the starter model is there, one click benchmarks it for real, failures stay failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from desktop.bench_queue import CANCELLED, DONE, FAILED, RUNNING


def _page(window, qtbot):
    page = window.page("benchmark")
    qtbot.waitUntil(lambda: page.models.count() > 0, timeout=10_000)
    return page


def test_the_starter_model_is_listed_and_one_click_benchmarks_it(window, qtbot, starter_model: Path) -> None:
    page = _page(window, qtbot)
    assert page.picked() == [starter_model]
    assert "starter" in page.models.item(0).text()
    qtbot.mouseClick(page.findChild(type(page.run_button), "preset-quick"), Qt.MouseButton.LeftButton)
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert len(page.queue.rows) == 1
    item = page.queue.row(0)
    qtbot.waitUntil(lambda: item.state not in ("queued", RUNNING), timeout=180_000)
    assert item.state == DONE, item.message
    assert [r.test for r in item.results] == ["pp64", "tg16"]
    assert all(r.status == "ok" and r.avg_ts > 0 and len(r.samples_ts) == 2 for r in item.results)
    assert page.chart.count == 4  # every sample reached the live chart as it arrived
    assert page.results.rowCount() == 2
    assert "t/s" in page.queue.data(page.queue.index(0, 2))
    # Each result was stored the moment it arrived, off the GUI thread.
    from models.results.store import ResultsStore

    with ResultsStore() as store:
        assert sorted(run.result.test for run in store.list_runs()) == ["pp64", "tg16"]


def test_a_worker_crash_is_a_failed_run_and_the_window_lives_on(window, qtbot, starter_model: Path,
                                                               tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(starter_model.read_bytes()[: 3 << 20])
    page = _page(window, qtbot)
    window.ctx.benchmark([truncated])
    assert page.picked() == [truncated]
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    item = page.queue.row(0)
    qtbot.waitUntil(lambda: item.state not in ("queued", RUNNING), timeout=120_000)
    assert item.state == FAILED
    assert item.message
    assert page.tabs.currentWidget() is page.detail
    assert "Why it failed" in page.detail.toPlainText()
    assert page.queue.data(page.queue.index(0, 1)).startswith("failed")
    # The window still answers: another page opens from the keyboard.
    qtbot.keyClick(window, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
    assert window.current_page() == "hardware"


def test_a_bad_parameter_is_refused_in_line(window, qtbot) -> None:
    page = _page(window, qtbot)
    threads = page.fields["n_threads"]
    threads.clear()
    qtbot.keyClicks(threads, "two")
    assert page.preset == "Custom"  # editing a field leaves the preset
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert "Threads" in page.error.text()
    assert page.queue.rowCount() == 0
    page.fields["n_ubatch"].setText("4096")
    threads.setText("1")
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert "n_ubatch" in page.error.text()


def test_presets_fill_the_form(window, qtbot) -> None:
    page = _page(window, qtbot)
    qtbot.mouseClick(page.findChild(type(page.run_button), "preset-long-context"), Qt.MouseButton.LeftButton)
    sweep = page.sweep([Path("model.gguf")])
    assert sweep.n_depth == [0, 512, 2048, 4096] and sweep.n_prompt == [512] and sweep.n_gen == [128]
    qtbot.mouseClick(page.findChild(type(page.run_button), "preset-standard"), Qt.MouseButton.LeftButton)
    sweep = page.sweep([Path("model.gguf")])
    assert (sweep.n_prompt, sweep.n_gen, sweep.repetitions, sweep.n_batch, sweep.n_ubatch) == (
        [512], [128], 5, [2048], [512])
    page.fields["ttft"].setText("200")
    assert page.sweep([Path("model.gguf")]).ttft_prompt_tokens == 200
    page.fields["ttft"].setText("0")
    page.fields["n_pg"].setText("128:32")
    page.fields["type_k"].setText("q8_0, f16")
    sweep = page.sweep([Path("model.gguf")])
    assert sweep.n_pg == [(128, 32)] and sweep.type_k == ["q8_0", "f16"]
    assert len(sweep.jobs()) == 2


@pytest.mark.slow
def test_cancel_stops_the_running_benchmark(window, qtbot, starter_model: Path) -> None:
    page = _page(window, qtbot)
    qtbot.mouseClick(page.findChild(type(page.run_button), "preset-standard"), Qt.MouseButton.LeftButton)
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    item = page.queue.row(0)
    qtbot.waitUntil(lambda: item.state == RUNNING and item.phase != "starting", timeout=60_000)
    assert page.cancel_button.isEnabled()
    qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: item.state != RUNNING, timeout=30_000)
    assert item.state == CANCELLED
    assert not page.cancel_button.isEnabled()
