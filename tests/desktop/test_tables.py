"""Every table model passes Qt's model tester, and sorts numbers as numbers."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from desktop.bench_queue import QueueItem
from desktop.metrics import result_columns
from desktop.queue_panel import QUEUE_COLUMNS
from desktop.tables import SORT_ROLE, RowTable, sortable
from models.bench.queue import BenchState
from models.bench.spec import BenchJob, BenchParams, BenchResult, BenchTest


def _result(test: str, ts: float, status: str = "ok") -> BenchResult:
    return BenchResult(model_filename="/m/a.gguf", test=test, avg_ts=ts, stddev_ts=ts / 20, status=status,
                       samples_ts=[ts, ts, ts], mem_peak=200 << 20, model_size=90 << 20, model_n_params=135_000_000,
                       error="worker crashed" if status == "failed" else "")


def test_result_table(qtmodeltester) -> None:
    table = RowTable(result_columns(with_when=True), [_result("pp64", 900.0), _result("tg16", 95.5),
                                                     _result("pp512", 0.0, "failed")])
    qtmodeltester.check(table)
    assert table.data(table.index(0, 3)) == "900.0 ± 45.0 t/s"
    assert "repetitions" in table.data(table.index(0, 3), Qt.ItemDataRole.ToolTipRole)
    assert table.data(table.index(2, 4), Qt.ItemDataRole.ToolTipRole) == "worker crashed"
    assert "tokens per second" in table.headerData(3, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    proxy = sortable(table)
    proxy.sort(3, Qt.SortOrder.DescendingOrder)
    assert [proxy.data(proxy.index(row, 2)) for row in range(3)] == ["pp64", "tg16", "pp512"]
    assert proxy.data(proxy.index(0, 3), SORT_ROLE) == 900.0
    proxy.setFilterFixedString("TG16")
    assert proxy.rowCount() == 1


def test_an_unsettled_throughput_is_marked_in_the_table() -> None:
    # The Quick preset's two repetitions once gave "128.1 ± 65.7 t/s" with nothing to say it is not a figure.
    wide = BenchResult(model_filename="/m/a.gguf", test="tg16", avg_ts=128.1, stddev_ts=65.7,
                       samples_ts=[81.6, 174.6, 128.1])
    two = BenchResult(model_filename="/m/a.gguf", test="pp64", avg_ts=900.0, stddev_ts=2.0, samples_ts=[898.0, 902.0])
    table = RowTable(result_columns(), [wide, two, _result("pp64", 900.0)])
    assert table.data(table.index(0, 2)).startswith("⚠ 128.1 ± 65.7")
    assert "51% of the mean" in table.data(table.index(0, 2), Qt.ItemDataRole.ToolTipRole)
    assert table.data(table.index(1, 2)).startswith("⚠")
    assert "only 2 repetitions" in table.data(table.index(1, 2), Qt.ItemDataRole.ToolTipRole)
    assert table.data(table.index(2, 2)) == "900.0 ± 45.0 t/s"  # 5 %, three repetitions: settled
    assert table.data(table.index(0, 2), Qt.ItemDataRole.ForegroundRole) is not None
    ttft = table.headerData(6, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert "prefill" in ttft and "first sampled token" in ttft


def test_queue_table(qtmodeltester, tmp_path: Path) -> None:
    job = BenchJob(model_path=tmp_path / "m.gguf", params=BenchParams(n_threads=2), tests=(BenchTest(64, 0),))
    table = RowTable(QUEUE_COLUMNS, [QueueItem(job=job), QueueItem(job=job, state=BenchState.RUNNING, fraction=0.5)])
    qtmodeltester.check(table)
    table.append(QueueItem(job=job, state=BenchState.FAILED, message="no"))
    table.remove(0)
    qtmodeltester.check(table)
    assert table.rowCount() == 2
