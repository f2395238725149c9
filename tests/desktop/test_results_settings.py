"""Results (history, compare, charts, export, import, delete) and Settings (costs, token, folders)."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCharts import QChartView
from PySide6.QtCore import Qt

from models.bench.spec import BenchResult


def _store_runs() -> None:
    from models.results.store import ResultsStore

    machine = {"machine_id": "m1", "cpu": "Test CPU", "gpus": []}
    with ResultsStore() as store:
        for depth in (0, 512):
            for model, size, pp, tg in (("a-Q4_0.gguf", 90 << 20, 900.0, 90.0), ("b-Q8_0.gguf", 150 << 20, 600.0, 60.0)):
                for test, n_prompt, n_gen, rate in (("pp64", 64, 0, pp), ("tg16", 0, 16, tg)):
                    name = f"{test} @ d{depth}" if depth else test
                    store.record_result(BenchResult(
                        model_filename=model, model_size=size, test=name, n_prompt=n_prompt, n_gen=n_gen,
                        n_depth=depth, n_threads=2, avg_ts=rate - depth / 100, stddev_ts=1.0,
                        samples_ts=[rate - 1, rate + 1], samples_ns=[1, 1], mem_peak=size + (50 << 20),
                        mem_rss_anon=40 << 20, test_time="2026-01-01T00:00:00Z"), machine=machine, job=model)


def test_results_history_compare_export_import_delete(window, qtbot, tmp_path: Path, qtmodeltester) -> None:
    from models.settings import load_settings, save_settings

    _store_runs()
    settings = load_settings()
    settings.system_power_watts = 120.0  # no energy sensor in these runs: the cost is estimated from watts
    save_settings(settings)
    qtbot.keyClick(window, Qt.Key.Key_6, Qt.KeyboardModifier.ControlModifier)
    page = window.pages["results"]
    qtbot.waitUntil(lambda: page.runs.rowCount() == 8, timeout=20_000)
    qtmodeltester.check(page.runs)
    qtbot.keyClicks(page.filter, "b-Q8")
    assert page.proxy.rowCount() == 4
    page.filter.clear()
    # Every run shown is compared when nothing is selected: two models, pp and tg at two depths.
    assert len(page.comparison.rows) == 2
    assert len(page.charts_holder.findChildren(QChartView)) == 4
    qtmodeltester.check(page.compare_table)
    cost = page.compare_table.columnCount() - 1
    assert page.compare_table.headerData(cost, Qt.Orientation.Horizontal).startswith("Cost [EUR / 1M tokens]")
    assert page.compare_table.data(page.compare_table.index(0, cost)).endswith("(est.)")
    assert "Electricity" in page.compare_table.data(page.compare_table.index(0, cost), Qt.ItemDataRole.ToolTipRole)
    page.view.selectAll()
    qtbot.waitUntil(lambda: len(page.selected()) == 8)
    page.view.selectRow(0)
    qtbot.mouseClick(page.baseline_button, Qt.MouseButton.LeftButton)
    assert page.tabs.currentWidget() is page.compare_view
    page.view.clearSelection()
    page.update_comparison()
    texts = [page.compare_table.data(page.compare_table.index(r, 3)) for r in range(2)]
    assert any("%" in text for text in texts)  # the other row's change against the baseline
    for fmt in ("csv", "json", "html", "md", "sql", "jsonl"):
        target = tmp_path / f"report.{fmt}"
        page.export(fmt, target)
        qtbot.waitUntil(target.exists, timeout=20_000)
    assert json.loads((tmp_path / "report.json").read_text())
    assert "avg_ts" in (tmp_path / "report.csv").read_text().splitlines()[0]
    page.import_report(tmp_path / "report.json")
    qtbot.waitUntil(lambda: "already here" in page.status.text(), timeout=20_000)
    page.view.selectRow(0)
    page.delete_selected(confirm=False)
    qtbot.waitUntil(lambda: page.runs.rowCount() == 7, timeout=20_000)


def test_settings_save_costs_and_folders(window, qtbot, tmp_path: Path) -> None:
    from models.hub.library import folders
    from models.settings import load_settings

    qtbot.keyClick(window, Qt.Key.Key_7, Qt.KeyboardModifier.ControlModifier)
    page = window.pages["settings"]
    price = page.editors["electricity_price_per_kwh"]
    price.selectAll()
    qtbot.keyClicks(price, "0.42")
    threads = page.editors["default_threads"]
    threads.selectAll()
    qtbot.keyClicks(threads, "3")
    qtbot.waitUntil(lambda: page.saved.text().startswith("Saved"), timeout=10_000)
    qtbot.waitUntil(lambda: load_settings().default_threads == 3, timeout=10_000)
    assert abs(load_settings().electricity_price_per_kwh - 0.42) < 1e-9
    # The benchmark form takes its default threads from the settings.
    window.show_page("benchmark")
    assert window.pages["benchmark"]._default_threads() == 3
    window.show_page("settings")
    page.add_folder(tmp_path)
    assert str(tmp_path) in [page.folder_list.item(i).text() for i in range(page.folder_list.count())]
    assert tmp_path in folders()
    page.folder_list.setCurrentRow(0)
    page.remove_folder()
    assert page.folder_list.count() == 0


def test_settings_token_goes_through_huggingface_hub(window, qtbot, hub) -> None:
    from huggingface_hub import get_token

    window.show_page("settings")
    page = window.pages["settings"]
    assert "No token" in page.token_state.text() and not page.logout_button.isEnabled()
    qtbot.keyClicks(page.token_edit, "hf_not_a_real_token")
    qtbot.mouseClick(page.login_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "not stored" in page.token_state.text(), timeout=30_000)
    assert "hf_not_a_real_token" not in page.token_state.text()
    assert get_token() is None
