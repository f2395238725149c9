"""Side-by-side comparison: grouping, pooled statistics, per-job measures, baselines, across machines."""

from __future__ import annotations

import statistics

import pytest

from models.results.compare import compare_runs, format_comparison
from models.errors import ReportError
from models.results.store import EnergyFigures, ResultsStore

from .conftest import MACHINE_A, MACHINE_B, make_result


def test_rows_per_run_columns_per_test_with_mean_spread_n(store: ResultsStore) -> None:
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
    assert {c.key for c in comparison.columns} >= {"ttft_ms", "load_ms", "mem_peak_mib", "energy tg128"}
    assert "energy pp512" not in {c.key for c in comparison.columns}  # no pp run had energy
    assert len(comparison.rows) == 5  # j1, j2 and j5 share a configuration but are three sittings
    j1, j2 = (next(r for r in comparison.rows if r.job == job) for job in ("j1", "j2"))
    assert j1.run_ids == [ids[0], ids[1]] and j2.run_ids == [ids[2]] and j1.config_key == j2.config_key
    assert j1.repeats == 3 and j1.failed == 0
    assert j1.cells["pp512"].n == 3 and j1.cells["pp512"].mean == pytest.approx(1000.0)
    assert j2.cells["pp512"].n == 2 and j2.cells["pp512"].mean == pytest.approx(1110.0)
    assert j2.cells["pp512"].spread == pytest.approx(statistics.stdev([1100.0, 1120.0]))
    assert j1.cells["tg128"].n == 3 and "tg128" not in j2.cells
    assert j1.cells["load_ms"].n == 1  # one load per sitting, not one per test result
    assert j1.cells["ttft_ms"].n == 2 and j1.cells["ttft_ms"].mean == pytest.approx(35.0)
    assert j1.cells["mem_peak_mib"].mean == pytest.approx(180.0)
    assert j1.cells["energy tg128"].mean == pytest.approx(38.4 / (128 * 3))
    failed = next(r for r in comparison.rows if r.job == "j5")
    assert failed.failed == 1 and not failed.cells
    qwen = next(r for r in comparison.rows if "Qwen3" in r.model_label)
    assert set(qwen.cells) >= {"pp512 @ d512"} and "pp512" not in qwen.cells and qwen.repeats == 1
    text = format_comparison(comparison)
    assert "Qwen3-0.6B-Q8_0.gguf" in text and f"runs {ids[0]}-{ids[1]}" in text and f"run {ids[2]}" in text


def test_sittings_of_one_configuration_are_not_pooled_and_a_disagreement_is_flagged(store: ResultsStore) -> None:
    fast = store.record_result(make_result(ts=(455.0, 459.0, 463.0), test_time="2026-11-20T09:00:00+00:00"),
                               machine=MACHINE_A, job="monday")
    slow = store.record_result(make_result(ts=(113.0, 115.0, 117.0), test_time="2026-11-24T18:30:00+00:00"),
                               machine=MACHINE_A, job="friday")
    comparison = compare_runs(store.get_runs([fast, slow]))
    # Pooled, these were one cell of "287.00 ± 189.xx (n=6)", a figure neither sitting measured.
    assert [r.cells["pp512"].mean for r in comparison.rows] == pytest.approx([459.0, 115.0])
    assert all(r.cells["pp512"].n == 3 and r.repeats == 2 for r in comparison.rows)
    assert [r.disagrees for r in comparison.rows] == [["pp512"], ["pp512"]]
    (spread,) = comparison.repeats
    assert spread.between.n == 2 and spread.between.mean == pytest.approx(287.0)
    assert spread.between.spread == pytest.approx(statistics.stdev([459.0, 115.0]))
    assert spread.disagree and spread.judged and spread.run_ids == [[fast], [slow]]
    assert len(comparison.warnings) == 1 and "disagree beyond their own spreads" in comparison.warnings[0]
    text = format_comparison(comparison)
    assert "459.00 ± 4.00 (n=3)" in text and "115.00 ± 2.00 (n=3)" in text and "(n=6)" not in text
    assert "run means 287.00 ± 243.24" in text and "WARNING" in text and "(runs disagree)" in text
    assert comparison.to_json()["warnings"] == comparison.warnings


def test_sittings_that_agree_within_their_spreads_give_no_warning(store: ResultsStore) -> None:
    a = store.record_result(make_result(ts=(990.0, 1000.0, 1010.0)), machine=MACHINE_A, job="a")
    b = store.record_result(make_result(ts=(1000.0, 1010.0, 1020.0)), machine=MACHINE_A, job="b")
    one = store.record_result(make_result(ts=(500.0,)), machine=MACHINE_A, job="c")
    comparison = compare_runs(store.get_runs([a, b]))
    assert len(comparison.rows) == 2 and not comparison.warnings and comparison.repeats[0].judged
    assert "WARNING" not in format_comparison(comparison)
    lone = compare_runs(store.get_runs([a, one]))
    # One repetition has no spread of its own: the difference is reported, but not judged.
    assert not lone.warnings and not lone.repeats[0].judged


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
