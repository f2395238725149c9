"""The trust label in the result tables, with its reason as the tooltip, and the filter that finds it."""

from __future__ import annotations

from PySide6.QtCore import Qt

from desktop.metrics import result_columns
from desktop.tables import RowTable, sortable
from models.bench.spec import BenchResult


def test_trust_column_and_filter(qtbot, qtmodeltester) -> None:
    rows = [BenchResult(test="pp64", avg_ts=900.0, samples_ts=[890.0, 910.0], trust="ok"),
            BenchResult(test="tg16", avg_ts=50.0, samples_ts=[40.0, 60.0], trust="noisy",
                        trust_reasons="spread 28.3% of the mean (over 5%)"),
            BenchResult(test="pp512", avg_ts=800.0, samples_ts=[800.0, 801.0]),  # stored before labels existed
            BenchResult(test="tg128", status="failed", error="worker crashed")]
    table = RowTable(result_columns(), rows=rows)
    qtmodeltester.check(table)
    trust = [c.title for c in table.columns].index("Trust")
    assert [table.data(table.index(r, trust)) for r in range(4)] == ["ok", "noisy", "not assessed", ""]
    assert table.data(table.index(1, trust), Qt.ItemDataRole.ToolTipRole) == "spread 28.3% of the mean (over 5%)"
    proxy = sortable(table)
    proxy.setFilterFixedString("noisy")
    assert proxy.rowCount() == 1 and proxy.data(proxy.index(0, 1)) == "tg16"
