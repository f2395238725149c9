"""The whole path through the widgets: search the (loopback) Hub, download, benchmark, compare, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCharts import QChartView
from PySide6.QtCore import Qt

from desktop.bench_queue import DONE, RUNNING
from models.hub.download import DownloadState

CTRL = Qt.KeyboardModifier.ControlModifier


@pytest.mark.slow
def test_search_download_benchmark_compare_export(window, qtbot, hub, starter_model: Path, tmp_path: Path) -> None:
    # The Hub serves the real starter model file, so what is downloaded can really be benchmarked.
    hub.add_repo("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", {"SmolLM2-135M-Instruct.Q4_1.gguf": starter_model,
                                                             "README.md": b"SmolLM2"}, downloads=1000)
    qtbot.keyClick(window, Qt.Key.Key_1, CTRL)
    discover = window.pages["discover"]
    qtbot.keyClicks(discover.search, "smollm2")
    qtbot.waitUntil(lambda: discover.repos.rowCount() == 1, timeout=20_000)
    discover.repo_view.selectRow(0)
    qtbot.waitUntil(lambda: discover.files.rowCount() == 1, timeout=20_000)
    discover.file_view.selectRow(0)
    qtbot.mouseClick(discover.download_button, Qt.MouseButton.LeftButton)

    qtbot.keyClick(window, Qt.Key.Key_2, CTRL)
    downloads = window.pages["downloads"]
    qtbot.waitUntil(lambda: downloads.table.rowCount() == 1
                    and downloads.table.row(0).state == DownloadState.DONE, timeout=120_000)
    job = downloads.table.row(0)
    assert job.result is not None and job.result.verified  # sha256 checked against the Hub's LFS hash
    downloaded = job.result.paths[0]

    qtbot.keyClick(window, Qt.Key.Key_3, CTRL)
    library = window.pages["library"]
    qtbot.waitUntil(lambda: any(e.path == downloaded for e in library.table.rows), timeout=20_000)
    library.select_path(downloaded)
    qtbot.mouseClick(library.bench_button, Qt.MouseButton.LeftButton)

    bench = window.pages["benchmark"]
    assert window.current_page() == "benchmark" and bench.picked() == [downloaded]
    qtbot.mouseClick(bench.findChild(type(bench.run_button), "preset-quick"), Qt.MouseButton.LeftButton)
    bench.fields["n_threads"].setText("1, 2")  # a thread sweep: two runs of the model to compare
    qtbot.mouseClick(bench.run_button, Qt.MouseButton.LeftButton)
    items = list(bench.ctx.bench.items)
    assert len(items) == 2
    qtbot.waitUntil(lambda: all(item.state not in ("queued", RUNNING) for item in items), timeout=300_000)
    assert [item.state for item in items] == [DONE, DONE], [item.message for item in items]

    qtbot.keyClick(window, Qt.Key.Key_6, CTRL)
    results = window.pages["results"]
    qtbot.waitUntil(lambda: results.runs.rowCount() == 4, timeout=20_000)
    results.view.selectAll()
    qtbot.waitUntil(lambda: len(results.comparison.rows) == 2 and len(results.selected()) == 4, timeout=10_000)
    assert len(results.charts_holder.findChildren(QChartView)) == 4
    report = tmp_path / "report.json"
    results.export("json", report)
    qtbot.waitUntil(report.exists, timeout=20_000)
    rows = json.loads(report.read_text())
    rows = rows.get("runs", rows) if isinstance(rows, dict) else rows
    assert len(rows) == 4 and {row["n_threads"] for row in rows} == {1, 2}
