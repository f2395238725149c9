"""Capacity page: a real load test and batched sweep of the starter model through the app's benchmark queue, live
charts and answer, cancel, bad input in words, a server that is not there, and past tests reopened."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt

from desktop.bench_queue import CANCELLED, DONE, RUNNING


def _page(window, qtbot):
    window.show_page("capacity")
    page = window.page("capacity")
    qtbot.waitUntil(lambda: page.model.count() > 0, timeout=10_000)
    return page


def _fill(page, **fields: str) -> None:
    for name, text in fields.items():
        getattr(page, name).setText(text)


def test_a_load_test_runs_live_is_kept_and_reopens(window, qtbot, starter_model: Path, qtmodeltester) -> None:
    from models.settings import load_settings, save_settings

    save_settings(replace(load_settings(), system_power_watts=60.0))  # no sensor here: the cost uses these watts
    page = _page(window, qtbot)
    assert "starter" in page.model.currentText() and page.model.currentData() == starter_model
    page.profile.setCurrentText("tiny")
    # Limits generous enough that both levels pass on a busy two-core test machine.
    _fill(page, concurrency="1, 2", requests="2", slo_ttft="120", slo_tpot="5000", threads="2")
    answers: list[str] = []  # the answer as it read after each level arrived, before the run ended
    window.ctx.bench.measured.connect(lambda _item, _event: answers.append(page.answer.text()))
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert page.error.text() == ""
    item = page._item
    assert item is not None and item.job.load is not None and item.job.load.profile == "tiny"
    assert page.cancel_button.isEnabled() and not page.run_button.isEnabled()
    qtbot.waitUntil(lambda: item.state.finished, timeout=300_000)
    assert item.state == DONE, item.message
    assert len(answers) == 2 and "serves 1 person" in answers[0], answers  # live: the first level answered alone
    levels = page.level_table.rows
    assert [level.concurrency for level in levels] == [1, 2]
    assert all(level.completed == 2 and level.failed == 0 and level.slo_met for level in levels), [
        (level.completed, level.failed, level.ttft.p90, level.tpot.p90, level.errors) for level in levels]
    per_person = page.charts.points("per person t/s")
    total = page.charts.points("total t/s")
    assert [x for x, _ in per_person] == [1, 2] and all(y > 0 for _, y in per_person + total)
    assert page.charts.points("SLO 120 s") == [(0, 120), (2, 120)]  # the limit across the axis
    ttft = page.charts.points("TTFT p90")
    assert [x for x, _ in ttft] == [1, 2] and all(0 < y < 120 for _, y in ttft)
    assert "serves 2 people at once" in page.answer.text(), page.answer.text()
    assert "per 1M output tokens at 2 at once" in page.cost.text(), page.cost.text()
    assert page.run_button.isEnabled() and not page.cancel_button.isEnabled()
    qtmodeltester.check(page.level_table)

    # Kept in the store as one measurement, listed with the past tests, and reopened as it was.
    qtbot.waitUntil(lambda: page.past.rowCount() == 1, timeout=30_000)
    qtmodeltester.check(page.past)
    saved = page.past.row(0)
    assert saved.kind == "load" and saved.target == "llama.cpp" and saved.model_name == starter_model.name
    assert "serves 2 people" in saved.answer
    shown = page.answer.text()
    page.level_table.set_rows([])
    page.answer.clear()
    page.past_view.selectRow(0)
    qtbot.mouseClick(page.open_button, Qt.MouseButton.LeftButton)
    assert page.answer.text() == shown
    assert [level.concurrency for level in page.level_table.rows] == [1, 2]
    assert "per 1M output tokens" in page.cost.text()
    # Deleting it empties the list (through a change operation: the page hears of it).
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.past.rowCount() == 0, timeout=30_000)


def test_bad_fields_are_refused_in_words_and_nothing_starts(window, qtbot, tmp_path: Path) -> None:
    page = _page(window, qtbot)
    for fields, words in (({"concurrency": "two"}, "People at once"),
                          ({"concurrency": "0, 2"}, "Concurrency levels must be between 1"),
                          ({"concurrency": "1", "slo_ttft": "soon"}, "SLO TTFT"),
                          ({"slo_ttft": "2", "percentile": "0"}, "percentile"),
                          ({"percentile": "90", "threads": "0"}, "threads must be at least 1")):
        _fill(page, **fields)
        qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
        assert words in page.error.text(), (fields, page.error.text())
        assert page._item is None and not window.ctx.bench.items
    page.profile.setEditText(str(tmp_path / "lengths.csv"))  # a lengths file that is not there
    _fill(page, threads="2")
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert "Unknown load profile" in page.error.text() and "lengths.csv" in page.error.text()
    (tmp_path / "lengths.csv").write_text("prompt_tokens,output_tokens\n12,abc\n")
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert "lengths.csv row 1: needs whole numbers" in page.error.text()
    assert page._item is None
    page.profile.setCurrentText("tiny")
    page.mode.setCurrentText("Batched sweep (llama-batched-bench)")
    _fill(page, threads="2", npl="")
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert "Sequences: give at least one number" in page.error.text()
    page.mode.setCurrentText("Load test")
    page.target.setCurrentText("An OpenAI-compatible server")
    _fill(page, url="localhost:8080")
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert "must start with http://" in page.error.text()


def test_a_server_that_is_not_there_is_said_and_the_run_ends(window, qtbot) -> None:
    with socket.socket() as probe:  # a port nothing listens on: bound, then closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    page = _page(window, qtbot)
    page.target.setCurrentText("An OpenAI-compatible server")
    assert not page.model.isVisible() and page.url.isVisible()
    page.profile.setCurrentText("tiny")
    _fill(page, url=f"http://127.0.0.1:{port}", concurrency="1, 2", requests="2")
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert page.running
    qtbot.waitUntil(lambda: not page.running, timeout=60_000)
    assert "No request succeeded" in page.error.text() and "cannot connect" in page.error.text()
    assert "does not meet" in page.answer.text()
    assert len(page.level_table.rows) == 1  # the sweep stopped at the first level that missed
    qtbot.waitUntil(lambda: page.past.rowCount() == 1, timeout=30_000)
    assert page.past.row(0).target.endswith("/v1/completions")
    page.all_levels.setChecked(True)  # every level, missed or not
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.running, timeout=60_000)
    assert [level.concurrency for level in page.level_table.rows] == [1, 2]


def test_cancel_stops_the_load_test(window, qtbot, starter_model: Path) -> None:
    page = _page(window, qtbot)
    page.profile.setCurrentText("chat")  # long requests: the test is still running when cancelled
    _fill(page, concurrency="1, 2, 4", requests="8", threads="2")
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    item = page._item
    qtbot.waitUntil(lambda: item.state == RUNNING and item.phase == "run", timeout=120_000)
    qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: item.state.finished, timeout=60_000)
    assert item.state == CANCELLED
    assert "Cancelled" in page.status.text()
    assert page.run_button.isEnabled() and not page.cancel_button.isEnabled()


def test_a_batched_sweep_fills_llama_batched_bench_table(window, qtbot, starter_model: Path, qtmodeltester) -> None:
    page = _page(window, qtbot)
    page.mode.setCurrentText("Batched sweep (llama-batched-bench)")
    assert not page.profile.isVisible() and page.npl.isVisible()
    _fill(page, npp="16", ntg="8", npl="1, 2", threads="2")
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    item = page._item
    assert item is not None and item.job.batched is not None
    qtbot.waitUntil(lambda: item.state.finished, timeout=300_000)
    assert item.state == DONE, item.message
    rows = page.batched_table.rows
    assert [(row["pp"], row["tg"], row["pl"]) for row in rows] == [(16, 8, 1), (16, 8, 2)]
    assert all(row["speed_tg"] > 0 and row["speed_pp"] > 0 for row in rows)
    headers = [page.batched_table.headerData(i, Qt.Orientation.Horizontal) for i in range(10)]
    assert headers == ["PP", "TG", "B", "N_KV", "T_PP", "S_PP", "T_TG", "S_TG", "T", "S"]
    qtmodeltester.check(page.batched_table)
    qtbot.waitUntil(lambda: page.past.rowCount() == 1, timeout=30_000)
    assert page.past.row(0).kind == "batched" and len(page.past.row(0).data["rows"]) == 2
