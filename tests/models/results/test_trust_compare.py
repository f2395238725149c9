"""Trust labels in the comparison and as a store filter (labels as the runner stores them in the result)."""

from __future__ import annotations

from pathlib import Path

from models.results.compare import compare_runs, format_comparison
from models.results.store import ResultsStore, RunFilter
from tests.models.results.conftest import make_result

MACHINE = {"machine_id": "m1", "cpu": "Test CPU"}


def test_labels_in_compare_and_the_filter(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.sqlite3") as store:
        store.record_result(make_result(n_prompt=512, trust="ok"), machine=MACHINE, job="a")
        store.record_result(make_result(n_prompt=0, n_gen=128, ts=(50.0, 40.0, 60.0), trust="noisy",
                                        trust_reasons="spread 20.0% of the mean (over 5%)",
                                        speed_estimate={"share_of_limit": 0.62, "ceiling_ts": 80.6}),
                            machine=MACHINE, job="a")
        store.record_result(make_result(n_prompt=512, ts=(900.0,)), machine=MACHINE, job="b")  # before labels
        runs = store.list_runs()
        noisy = store.list_runs(filters=RunFilter(trust="noisy"))
        ok = store.list_runs(filters=RunFilter(trust="ok"))
    assert [r.result.test for r in noisy] == ["tg128"] and [r.result.test for r in ok] == ["pp512"]
    comparison = compare_runs(runs)
    flagged = [row for row in comparison.rows if row.trust]
    assert len(flagged) == 1 and flagged[0].trust == {"tg128": "noisy"}
    text = format_comparison(comparison)
    assert "[noisy]" in text and "tg128: noisy (spread 20.0% of the mean (over 5%))" in text
    assert text.count("[noisy]") == 1 and "[ok]" not in text
    assert comparison.to_json()["rows"][0]["trust"] is not None
    assert "tg128: at 62% of the limit" in text  # "tg at N% of this machine's memory-bandwidth limit"
