"""Numbers you can trust, in the app: repetitions auto by default with each result's interval shown, the
LocalScore preset run for real with its score where results are shown, and trust labels in the comparison."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from desktop.bench_queue import DONE, RUNNING
from models.bench.trust.adaptive import AdaptivePlan, relative_ci95
from models.bench.localscore import ABOUT, localscore, localscore_tests
from tests.models.gguf.factory import Shape, write_model


def _page(window, qtbot):
    page = window.page("benchmark")
    qtbot.waitUntil(lambda: page.models.count() > 0, timeout=10_000)
    return page


def _button(page, name: str):
    return page.findChild(type(page.run_button), f"preset-{name}")


def _column(table, title: str) -> int:
    return [c.title for c in table.columns].index(title)


def test_repetitions_are_auto_by_default_and_each_result_shows_its_interval(window, qtbot,
                                                                           starter_model: Path) -> None:
    page = _page(window, qtbot)
    assert page.preset == "Quick" and page.fields["repetitions"].text() == "auto"  # how the page opens
    assert page.sweep([starter_model]).adaptive == AdaptivePlan()
    for name, expected in (("long-context", "auto"), ("standard", "5"), ("localscore", "1"), ("quick", "auto")):
        qtbot.mouseClick(_button(page, name), Qt.MouseButton.LeftButton)
        assert page.fields["repetitions"].text() == expected, name
    assert "fixed 5" in _button(page, "standard").toolTip()  # Standard says why it is not auto
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    item = page.queue.row(0)
    assert item.job.adaptive == AdaptivePlan()
    qtbot.waitUntil(lambda: item.state not in ("queued", RUNNING), timeout=180_000)
    assert item.state == DONE, item.message
    assert [r.test for r in item.results] == ["pp64", "tg16"]
    for r in item.results:
        # At least the plan's 3, at most its cap; stopped when the interval met the target (or at the cap).
        assert 3 <= len(r.samples_ts) <= 30 and r.ci_target == 0.02
        assert r.ci_met == (relative_ci95(r.samples_ts) <= 0.02)
        assert r.ci_met or len(r.samples_ts) == 30 or sum(r.samples_ns) >= 60e9  # a miss: the cap stopped it
    assert page.chart.count == sum(len(r.samples_ts) for r in item.results)
    page.queue_view.selectRow(0)
    qtbot.waitUntil(lambda: page.results.rowCount() == 2)
    column = _column(page.results, "95% interval")
    for row, r in enumerate(item.results):
        text = page.results.data(page.results.index(row, column))
        share = r.ci95_ts / r.avg_ts
        assert text.startswith(f"±{share:.1%}")
        assert text.endswith(" ✓") if r.ci_met else text.endswith("(target ±2%)")
        tip = page.results.data(page.results.index(row, column), Qt.ItemDataRole.ToolTipRole)
        assert f"over {len(r.samples_ts)} repetitions" in tip and "within ±2% (auto)" in tip


def test_the_localscore_preset_runs_its_tests_and_shows_its_score(window, qtbot, tmp_path: Path) -> None:
    # A tiny random model so LocalScore's 9,104 generated tokens take seconds; llama.cpp runs it for real.
    model = write_model(tmp_path / "tiny.gguf", Shape(n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256,
                                                     ctx_train=8192))
    page = _page(window, qtbot)
    window.ctx.benchmark([model])
    qtbot.mouseClick(_button(page, "localscore"), Qt.MouseButton.LeftButton)
    assert page.preset == "LocalScore"
    assert page.preset_info.isVisible() and ABOUT in page.preset_info.text()
    assert ABOUT in _button(page, "localscore").toolTip()
    assert page.fields["n_pg"].isReadOnly() and page.fields["n_pg"].text().startswith("1024:16, 4096:256")
    assert page.fields["flash_attn"].text() == "off" and page.fields["flash_attn"].isReadOnly()
    for key, value in (("n_threads", "1"), ("n_gpu_layers", "0")):  # LocalScore's own options stay choosable
        page.fields[key].clear()
        qtbot.keyClicks(page.fields[key], value)
    assert page.preset == "LocalScore"
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert page.error.text() == ""
    item = page.queue.row(0)
    assert tuple(item.job.tests) == localscore_tests() and item.job.repetitions == 1 and item.job.adaptive is None
    qtbot.waitUntil(lambda: item.state not in ("queued", RUNNING), timeout=300_000)
    assert item.state == DONE, item.message
    results = item.results
    assert [r.test for r in results] == [t.name for t in localscore_tests()]
    assert all(r.n_batch == 2048 and r.n_ubatch == 512 and str(r.flash_attn) in ("off", "0") and r.n_threads == 1
               and len(r.samples_ts) == 1 for r in results)
    score = localscore(results)
    assert score.complete and score.score > 0
    summary = page.queue.data(page.queue.index(0, 2))
    assert summary.startswith(f"LocalScore {score.score:,.0f} · ")
    page.queue_view.selectRow(0)
    qtbot.waitUntil(lambda: f"LocalScore {score.score:.0f}  tiny.gguf" in page.detail.toPlainText())

    window.show_page("results")
    results_page = window.pages["results"]
    qtbot.waitUntil(lambda: results_page.runs.rowCount() == len(results), timeout=20_000)
    results_page.view.selectAll()
    qtbot.waitUntil(lambda: len(results_page.selected()) == len(results) and len(results_page.comparison.rows) == 1,
                    timeout=10_000)
    table = results_page.compare_table
    column = _column(table, "LocalScore")
    assert table.data(table.index(0, column)) == f"{score.score:,.0f}"
    assert table.headerData(column, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole) == ABOUT

    # Back to another preset: the form is editable again and the note goes.
    window.show_page("benchmark")
    qtbot.mouseClick(_button(page, "quick"), Qt.MouseButton.LeftButton)
    assert not page.fields["n_pg"].isReadOnly() and page.fields["n_pg"].text() == ""
    assert not page.preset_info.isVisible()
    assert page.fields["flash_attn"].text() == window.ctx.settings().bench_flash_attn  # the user's, not LocalScore's
    page.fields["n_prompt"].setText("512")
    qtbot.keyClicks(page.fields["n_prompt"], "0")
    assert page.preset == "Custom"


def test_a_form_edit_outside_localscore_s_options_is_not_possible(window, qtbot, starter_model: Path) -> None:
    page = _page(window, qtbot)
    qtbot.mouseClick(_button(page, "localscore"), Qt.MouseButton.LeftButton)
    before = page.fields["n_batch"].text()
    qtbot.keyClicks(page.fields["n_batch"], "9")
    assert page.fields["n_batch"].text() == before and page.preset == "LocalScore"
    page.fields["repetitions"].clear()
    qtbot.keyClicks(page.fields["repetitions"], "auto")
    jobs = page.jobs([starter_model])
    assert page.preset == "LocalScore" and len(jobs) == 1
    assert jobs[0].adaptive == AdaptivePlan() and tuple(jobs[0].tests) == localscore_tests()


def test_the_comparison_shows_trust_labels_with_their_reasons(window, qtbot) -> None:
    """Labels as the runner stores them: the core's assess() on real sample sets."""
    from PySide6.QtGui import QColor

    from models.bench.trust.labels import assess
    from tests.models.results.conftest import MACHINE_A, make_result

    def judged(**kwargs):
        result = make_result(**kwargs)
        label, reasons = assess(result.to_json(), {})
        result.trust, result.trust_reasons = label, "; ".join(reasons)
        return result

    with window.ctx.open_store() as store:
        for result in (judged(n_prompt=512), judged(n_prompt=0, n_gen=128, ts=(50.0, 40.0, 60.0)),
                       judged(n_prompt=0, n_gen=64, ts=(100.0, 96.0, 92.0, 88.0, 84.0))):
            store.record_result(result, machine=MACHINE_A, job="sitting")
    window.show_page("results")
    page = window.pages["results"]
    qtbot.waitUntil(lambda: page.runs.rowCount() == 3, timeout=20_000)
    page.view.selectAll()
    qtbot.waitUntil(lambda: len(page.selected()) == 3 and len(page.comparison.rows) == 1, timeout=10_000)
    table = page.compare_table
    cells = {}
    for test in ("pp512", "tg64", "tg128"):
        index = table.index(0, _column(table, f"{test} [t/s]"))
        cells[test] = (table.data(index), table.data(index, Qt.ItemDataRole.ToolTipRole),
                       table.data(index, Qt.ItemDataRole.ForegroundRole))
    assert "⚠" not in cells["pp512"][0] and cells["pp512"][1] == "n = 3" and cells["pp512"][2] is None
    assert cells["tg128"][0].endswith("⚠ noisy") and cells["tg128"][2] == QColor("#c77c02")
    assert cells["tg128"][1] == "noisy: spread 20.0% of the mean (over 5%)\nn = 3"
    assert cells["tg64"][0].endswith("⚠ throttled") and "fell" in cells["tg64"][1]
    assert "LocalScore" not in [c.title for c in table.columns]  # no LocalScore run among these


def test_the_interval_column_says_whether_the_target_was_met(qtbot, qtmodeltester) -> None:
    from desktop.metrics import result_columns
    from desktop.tables import RowTable
    from models.bench.trust.adaptive import ci95
    from models.bench.spec import BenchResult

    fixed = [100.0, 101.0, 99.0, 100.5, 99.5]
    missed = [100.0, 90.0, 110.0]
    rows = [BenchResult(test="pp64", avg_ts=100.0, samples_ts=fixed, ci95_ts=ci95(fixed)),  # -r 5
            BenchResult(test="tg16", avg_ts=100.0, samples_ts=missed, ci95_ts=ci95(missed), ci_target=0.02),
            BenchResult(test="tg16", avg_ts=100.0, samples_ts=fixed, ci95_ts=ci95(fixed), ci_target=0.02,
                        ci_met=True),
            BenchResult(test="pp512", avg_ts=800.0, samples_ts=[800.0]),  # one repetition: no interval
            BenchResult(test="pp512", avg_ts=800.0, samples_ts=[790.0, 810.0]),  # stored before intervals
            BenchResult(test="tg128", status="failed", error="worker crashed")]
    table = RowTable(result_columns(), rows=rows)
    qtmodeltester.check(table)
    column = _column(table, "95% interval")
    texts = [table.data(table.index(r, column)) for r in range(len(rows))]
    assert texts == ["±1.0%", "±24.8% (target ±2%)", "±1.0% ✓", "–", "±15.9%", ""]  # t(4), t(2), t(1) x sd/√n
    assert table.data(table.index(1, column), Qt.ItemDataRole.ForegroundRole) is not None  # missed: marked
    assert table.data(table.index(2, column), Qt.ItemDataRole.ForegroundRole) is None
    assert "fixed number" in table.data(table.index(0, column), Qt.ItemDataRole.ToolTipRole)
    rate = _column(table, "Throughput")  # the rate's tooltip says it too, where the eye already is
    assert table.data(table.index(1, rate), Qt.ItemDataRole.ToolTipRole).endswith(
        "95% interval of the mean ±24.8% (target ±2%)")
    assert "not reached" in table.data(table.index(1, column), Qt.ItemDataRole.ToolTipRole)


def test_localscore_jobs_keep_the_rpc_servers_of_the_form() -> None:
    """An RPC pool chosen on the page reaches the LocalScore jobs (LocalScore's own settings replace the rest)."""
    from models.bench.localscore import localscore_jobs
    from models.bench.spec import BenchJob, BenchParams, BenchTest

    def job(rpc: str) -> BenchJob:
        return BenchJob(model_path=Path("m.gguf"), params=BenchParams(n_threads=2, flash_attn="on", rpc=rpc),
                        tests=(BenchTest(n_prompt=64, n_gen=0),))

    jobs = localscore_jobs([job(""), job("127.0.0.1:50052"), job("")])
    assert [j.params.rpc for j in jobs] == ["", "127.0.0.1:50052"]
    assert all(j.params.flash_attn == "off" and tuple(j.tests) == localscore_tests() for j in jobs)


def test_localscore_on_a_model_trained_for_less_context_is_refused_in_words(window, qtbot, tmp_path: Path) -> None:
    # LocalScore's deepest test is tg256 after 4096 prompt tokens: 4,352 tokens of context.
    model = write_model(tmp_path / "short.gguf", Shape(n_layer=1, n_embd=64, n_head=2, n_head_kv=1, n_ff=128,
                                                      ctx_train=2048))
    page = _page(window, qtbot)
    window.ctx.benchmark([model])
    qtbot.mouseClick(_button(page, "localscore"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "trained for 2,048" in page.error.text(), timeout=10_000)
    assert "LocalScore's tests are fixed" in page.error.text() and "context depth" not in page.error.text()
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert page.queue.rowCount() == 0


def test_the_comparison_s_frozen_model_column_follows_a_narrower_selection(qtbot) -> None:
    """Selecting runs with shorter names (a LocalScore sitting after longer ones) once left the frozen first column
    as wide as before, covering the Machine column beside it."""
    from desktop.tables import Column, RowTable, table_view

    table = RowTable([Column("Model", lambda r: r)], ["a-rather-long-model-file-name-Q4_K_M.gguf"])
    view = table_view(table, freeze_first=True)
    qtbot.addWidget(view)
    view.resize(800, 300)
    view.show()
    view.resizeColumnsToContents()
    wide = view.columnWidth(0)
    table.columns = [Column("Model", lambda r: r), Column("Machine", lambda r: "AMD EPYC")]
    table.set_rows(["tiny.gguf"])
    view.resizeColumnsToContents()
    assert view.columnWidth(0) < wide
    assert view.frozen.geometry().width() == view.frozen.columnWidth(0) == view.columnWidth(0)
