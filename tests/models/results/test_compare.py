"""Side-by-side comparison: grouping, pooled statistics, per-job measures, baselines, across machines."""

from __future__ import annotations

import statistics

import pytest

from models.results.compare import compare_runs, format_comparison
from models.errors import ReportError
from models.results.store import EnergyFigures, ResultsStore

from .conftest import MACHINE_A, MACHINE_B, make_result


def test_rows_per_model_and_settings_columns_per_test_with_mean_spread_n(store: ResultsStore) -> None:
    ids = [
        store.record_result(make_result(ts=(1000.0, 1010.0, 990.0), ttft_samples_ms=[30.0, 40.0]),
                            machine=MACHINE_A, job="j1"),
        store.record_result(make_result(n_prompt=0, n_gen=128, ts=(50.0, 52.0, 51.0)), machine=MACHINE_A,
                            job="j1", energy=EnergyFigures(joules=38.4, seconds=7.5, source="rapl",
                                                           is_estimate=False)),
        store.record_result(make_result(ts=(1100.0, 1120.0)), machine=MACHINE_A, job="j2"),  # same settings
        store.record_result(make_result(n_threads=8, ts=(1500.0,)), machine=MACHINE_A, job="j3"),
        store.record_result(make_result(model="Qwen3-0.6B-Q8_0.gguf", n_depth=512, ts=(400.0, 410.0)),
                            machine=MACHINE_A, job="j4"),
        store.record_result(make_result(status="failed"), machine=MACHINE_A, job="j5"),
    ]
    comparison = compare_runs(store.get_runs(ids))
    assert [c.key for c in comparison.columns][:3] == ["pp512", "tg128", "pp512 @ d512"]
    assert {c.key for c in comparison.columns} >= {"ttft_ms", "load_ms", "mem_peak_mib", "energy_tg"}
    assert "energy_pp" not in {c.key for c in comparison.columns}  # no pp run had energy
    assert len(comparison.rows) == 3
    t4 = next(r for r in comparison.rows if r.settings["n_threads"] == 4 and "SmolLM2" in r.model_label)
    assert t4.run_ids == [ids[0], ids[1], ids[2], ids[5]] and t4.failed == 1
    pooled = [1000.0, 1010.0, 990.0, 1100.0, 1120.0]
    assert t4.cells["pp512"].n == 5
    assert t4.cells["pp512"].mean == pytest.approx(statistics.mean(pooled))
    assert t4.cells["pp512"].spread == pytest.approx(statistics.stdev(pooled))
    assert t4.cells["tg128"].n == 3
    assert t4.cells["load_ms"].n == 2  # one load per job (j1, j2), not one per test result
    assert t4.cells["ttft_ms"].n == 3 and t4.cells["ttft_ms"].mean == pytest.approx(35.0)  # j1's 2 samples, j2's
    assert t4.cells["mem_peak_mib"].mean == pytest.approx(180.0)
    assert t4.cells["energy_tg"].mean == pytest.approx(38.4 / (128 * 3))
    qwen = next(r for r in comparison.rows if "Qwen3" in r.model_label)
    assert set(qwen.cells) >= {"pp512 @ d512"} and "pp512" not in qwen.cells
    assert "Qwen3-0.6B-Q8_0.gguf" in format_comparison(comparison)


def test_differences_to_a_baseline_across_machines(store: ResultsStore) -> None:
    a = store.record_result(make_result(ts=(1000.0, 1000.0)), machine=MACHINE_A)
    b = store.record_result(make_result(ts=(1500.0, 1500.0)), machine=MACHINE_B)
    comparison = compare_runs(store.get_runs([a, b]), baseline=a)
    rows = {r.machine_label: r for r in comparison.rows}
    assert len(rows) == 2  # same model and settings, two machines: two rows
    base, other = rows["AMD Ryzen 7 7840U"], rows["Intel Core i9-13900K + NVIDIA GeForce RTX 4090"]
    assert base.is_baseline and comparison.baseline_key == base.key
    assert other.diffs["pp512"] == pytest.approx(50.0)
    assert base.diffs["pp512"] == pytest.approx(0.0)
    text = format_comparison(comparison)
    assert "(baseline)" in text and "+50.0%" in text
    with pytest.raises(ReportError, match="baseline run 999"):
        compare_runs(store.get_runs([a, b]), baseline=999)
