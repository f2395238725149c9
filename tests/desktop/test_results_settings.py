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
    page.add_folder(tmp_path)  # a change operation: off the GUI thread, then every page showing folders follows
    qtbot.waitUntil(lambda: str(tmp_path) in [page.folder_list.item(i).text()
                                              for i in range(page.folder_list.count())], timeout=10_000)
    assert tmp_path in folders()
    page.folder_list.setCurrentRow(0)
    page.remove_folder()
    qtbot.waitUntil(lambda: page.folder_list.count() == 0, timeout=10_000)


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


def _store_twins(*, tests: tuple[str, ...] = ("pp64", "tg16", "pp64 @ d512", "tg16 @ d512")) -> None:
    """The same file name from two folders (different files), each at two thread counts, four tests."""
    from models.results.store import ResultsStore

    machine = {"machine_id": "m1", "cpu": "Test CPU", "gpus": []}
    with ResultsStore() as store:
        for folder, size, speed in (("repo-one", 90 << 20, 1.0), ("repo-two", 95 << 20, 0.8)):
            for threads in (1, 2):
                for name in tests:
                    base, _, depth = name.partition(" @ d")
                    n_prompt, n_gen = (int(base[2:]), 0) if base.startswith("pp") else (0, int(base[2:]))
                    rate = (900.0 if n_prompt else 90.0) * speed * threads
                    store.record_result(BenchResult(
                        model_filename=f"/models/{folder}/SmolLM2-135M-Instruct.Q4_1.gguf", model_size=size,
                        test=name, n_prompt=n_prompt, n_gen=n_gen, n_depth=int(depth or 0), n_threads=threads,
                        avg_ts=rate, stddev_ts=1.0, samples_ts=[rate - 1, rate, rate + 1], samples_ns=[1, 1, 1],
                        mem_peak=size, mem_rss_anon=40 << 20, test_time="2026-01-01T00:00:00Z"),
                        machine=machine, job=folder)


def _bar_chart(page):
    from PySide6.QtCharts import QAbstractBarSeries, QBarCategoryAxis

    view = page.charts.findChildren(QChartView)[0]
    series = [s for s in view.chart().series() if isinstance(s, QAbstractBarSeries)][0]
    axis = [a for a in view.chart().axes() if isinstance(a, QBarCategoryAxis)][0]
    return series, axis.categories()


def test_comparison_charts_every_test_with_names_that_tell_rows_apart(window, qtbot) -> None:
    _store_twins()
    window.show_page("results")
    page = window.pages["results"]
    qtbot.waitUntil(lambda: page.runs.rowCount() == 16, timeout=20_000)
    page.view.selectAll()
    qtbot.waitUntil(lambda: len(page.comparison.rows) == 4, timeout=5_000)
    series, categories = _bar_chart(page)
    # Every test is charted, not only the first pp and tg; every row keeps its bars.
    assert [bar_set.label() for bar_set in series.barSets()] == ["pp64", "tg16", "pp64 @ d512", "tg16 @ d512"]
    assert len(categories) == 4 and len(set(categories)) == 4
    assert all(bar_set.at(row) > 0 for bar_set in series.barSets() for row in range(4))
    # Same file, different folders: the folder is named, on the axis and in the comparison table.
    assert sum("repo-one" in name for name in categories) == 2, categories
    assert all(len(name) <= 48 for name in categories)
    models = {page.compare_table.data(page.compare_table.index(r, 0)) for r in range(4)}
    assert models == {"SmolLM2-135M-Instruct.Q4_1.gguf — repo-one", "SmolLM2-135M-Instruct.Q4_1.gguf — repo-two"}
    # Only deep runs selected: the charts still draw their bars.
    page.filter.setText("@ d512")
    page.view.selectAll()
    qtbot.waitUntil(lambda: len(page.selected()) == 8)
    page.update_comparison()
    series, categories = _bar_chart(page)
    assert [bar_set.label() for bar_set in series.barSets()] == ["pp64 @ d512", "tg16 @ d512"]
    assert sum(bar_set.sum() for bar_set in series.barSets()) > 0


def test_the_html_report_charts_every_test(window, qtbot, tmp_path: Path) -> None:
    _store_twins(tests=("pp64", "pp512", "tg16", "tg16 @ d512"))
    window.show_page("results")
    page = window.pages["results"]
    qtbot.waitUntil(lambda: page.runs.rowCount() == 16, timeout=20_000)
    target = tmp_path / "report.html"
    page.export("html", target)
    qtbot.waitUntil(target.exists, timeout=20_000)
    html = target.read_text()
    for test in ("pp64", "pp512", "tg16", "tg16 @ d512"):
        assert f"— {test}: " in html, test  # a bar's tooltip names the row, the test and its figure


def test_runs_stored_by_another_process_appear(window, qtbot) -> None:
    import subprocess
    import sys

    window.show_page("results")
    page = window.pages["results"]
    qtbot.waitUntil(lambda: "No runs yet" in page.count.text(), timeout=10_000)
    # What `tokenometer bench` does: another process commits runs to the same database.
    code = ("from tests.desktop.test_results_settings import _store_runs; _store_runs()")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
    qtbot.waitUntil(lambda: page.runs.rowCount() == 8, timeout=10_000)
    # And when the page comes back into view after the CLI ran (the poll stopped: showing the page alone does it).
    page._store_timer.stop()
    window.show_page("benchmark")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
    window.show_page("results")
    qtbot.waitUntil(lambda: page.runs.rowCount() == 16, timeout=5_000)


def test_results_fit_a_1024_by_700_screen_with_rows_to_read(window, qtbot) -> None:
    _store_twins()
    window.show_page("results")
    page = window.pages["results"]
    qtbot.waitUntil(lambda: page.runs.rowCount() == 16, timeout=20_000)
    page.view.selectAll()
    qtbot.waitUntil(lambda: len(page.comparison.rows) == 4, timeout=5_000)
    window.resize(1024, 700)
    qtbot.wait(50)
    assert window.minimumSizeHint().height() <= 700 and window.minimumSizeHint().width() <= 1024
    assert window.height() <= 700
    rows_shown = page.view.viewport().height() // page.view.rowHeight(0)
    assert rows_shown >= 6, rows_shown
    # The Model column stays on screen when the figures scroll sideways.
    frozen = page.view.frozen
    page.view.horizontalScrollBar().setValue(page.view.horizontalScrollBar().maximum())
    assert page.view.horizontalScrollBar().value() > 0
    assert frozen.isVisible() and frozen.x() <= page.view.frameWidth() + 1
    assert frozen.model().headerData(0, Qt.Orientation.Horizontal) == "Model"
    assert frozen.columnWidth(0) == page.view.columnWidth(0) and not frozen.isColumnHidden(0)
    assert all(frozen.isColumnHidden(c) for c in range(1, page.runs.columnCount()))
    page.view.verticalScrollBar().setValue(page.view.verticalScrollBar().maximum())
    assert frozen.verticalScrollBar().value() == page.view.verticalScrollBar().value() > 0


def test_two_sittings_of_one_configuration_keep_apart_names_in_the_charts() -> None:
    from desktop.compare_view import chart_labels
    from models.results.compare import compare_runs
    from models.results.store import ResultsStore

    machine = {"machine_id": "m1", "cpu": "Test CPU", "gpus": []}
    with ResultsStore() as store:
        for sitting in ("job-a", "job-b"):
            store.record_result(BenchResult(model_filename="/models/a-Q4_0.gguf", model_size=1 << 20, test="tg16",
                                            n_gen=16, n_threads=2, avg_ts=90.0, samples_ts=[89.0, 90.0, 91.0],
                                            test_time="2026-01-01T00:00:00Z"), machine=machine, job=sitting)
        runs = store.list_runs()
    comparison = compare_runs(runs)
    assert len(comparison.rows) == 2 and all(row.repeats == 2 for row in comparison.rows)
    short, full = chart_labels(comparison.rows, runs)
    assert len(set(short)) == 2 and all(row.started_at[11:16] in name for row, name in zip(comparison.rows, short))
    assert all(row.sitting in tip for row, tip in zip(comparison.rows, full))
