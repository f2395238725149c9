"""Trust labels and LocalScore in the reports: the label beside the figure with its reason as a tooltip and a
note, the label per run, and the score of a sitting that ran LocalScore's preset.

The labels are the core's own verdicts (models.bench.trust.labels.assess) on real sample sets and run conditions, as
the runner stores them; the partial-offload case needs GPU buffers, which this machine cannot make: its buffers
and gpu_info are written by hand and say so.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

from models.bench.localscore import ABOUT, LOCALSCORE_TESTS, localscore
from models.bench.trust.labels import assess
from models.results.compare import compare_runs, format_comparison
from models.results.report_html import render_html
from models.results.store import ResultsStore, RunRecord

from .conftest import MACHINE_A, make_result
from .test_report_html import _body
from .test_report_pages import _dom


def _judged(conditions: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """A result labelled the way the runner labels it: assess() on its samples and conditions."""
    result = make_result(**kwargs)
    label, reasons = assess(result.to_json(), conditions or {})
    result.trust, result.trust_reasons = label, "; ".join(reasons)
    return result


def _localscore_sitting(store: ResultsStore, *, job: str, flash_attn: str, speed: float) -> list[int]:
    """The nine pairs of LocalScore as the preset stores them: each prompt once at depth 0, each generation at
    its prompt's depth, one repetition each (LocalScore's default)."""
    ids = []
    for p in sorted({p for p, _, _ in LOCALSCORE_TESTS}):
        ids.append(store.record_result(make_result(n_prompt=p, ts=(speed * 20,), flash_attn=flash_attn, trust="ok"),
                                       machine=MACHINE_A, job=job))
    for p, g, _ in LOCALSCORE_TESTS:
        ids.append(store.record_result(make_result(n_prompt=0, n_gen=g, n_depth=p, ts=(speed,), flash_attn=flash_attn,
                                                   trust="ok"), machine=MACHINE_A, job=job))
    return ids


def _runs(tmp_path: Path) -> tuple[list[RunRecord], list[RunRecord]]:
    with ResultsStore(tmp_path / "s.sqlite3") as store:
        ids = [store.record_result(_judged(n_prompt=512), machine=MACHINE_A, job="a"),
               store.record_result(_judged(n_prompt=0, n_gen=128, ts=(50.0, 40.0, 60.0)), machine=MACHINE_A, job="a"),
               # A steady fall across repetitions: the machine slowed down as it heated.
               store.record_result(_judged(n_prompt=0, n_gen=64, ts=(100.0, 96.0, 92.0, 88.0, 84.0)),
                                   machine=MACHINE_A, job="a"),
               store.record_result(_judged({"swap_in": 40 * 2**20, "swap_out": 8 * 2**20}, n_prompt=256),
                                   machine=MACHINE_A, job="a"),
               # Simulated GPU: every layer asked for (-1), a third of the weights left in CPU buffers.
               store.record_result(_judged(n_prompt=1024, n_gpu_layers=-1, gpu_info="NVIDIA RTX 4090 (simulated)",
                                           buffers={"CUDA0:model": 60 * 2**20, "CPU:model": 30 * 2**20}),
                                   machine=MACHINE_A, job="a"),
               store.record_result(make_result(n_prompt=128), machine=MACHINE_A, job="a")]  # before labels
        scored = _localscore_sitting(store, job="ls", flash_attn="off", speed=40.0)
        # The same nine tests with flash attention on are not LocalScore's settings: no score for them.
        other = _localscore_sitting(store, job="ls-fa", flash_attn="on", speed=45.0)
        return store.get_runs(ids), store.get_runs(scored + other)


def test_trust_labels_in_the_html_report_with_their_reasons(tmp_path: Path) -> None:
    runs, _ = _runs(tmp_path)
    assert [r.result.trust for r in runs] == ["ok", "noisy", "throttled", "swapped", "partial offload", ""]
    html = render_html(runs)
    comparison = html[html.index("<h2>Comparison</h2>"):html.index("<h2>Every run</h2>")]
    tags = dict(re.findall(r'data-trust="([^"]+)" title="([^"]+)"', comparison))
    assert set(tags) == {"noisy", "throttled", "swapped", "partial offload"}  # ok is not flagged
    assert tags["noisy"].startswith("spread 20.0% of the mean")
    assert "fell" in tags["throttled"] and "48 MiB swapped" in tags["swapped"]
    assert "stayed on the CPU" in tags["partial offload"]
    # The notes say the same for a printout, one line per flagged figure.
    notes = re.search(r'<ul class="trust-notes">(.*?)</ul>', comparison, re.S)
    assert notes is not None and notes.group(1).count("<li>") == 4
    assert "tg128: " in notes.group(1) and "spread 20.0% of the mean (over 5%)" in notes.group(1)
    every = html[html.index("<h2>Every run</h2>"):]
    header = re.search(r"<thead>(.*?)</thead>", every, re.S)
    assert header is not None and ">trust</th>" in header.group(1)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row)[11] for row in re.findall(r"<tr>(.*?)</tr>", every)[1:]]
    assert cells[0] == "ok" and 'data-trust="noisy"' in cells[1] and cells[5] == ""  # unlabelled: nothing said


def test_the_trust_labels_fit_a_printed_page_and_load_cleanly(tmp_path: Path) -> None:
    runs, scored = _runs(tmp_path)
    page = tmp_path / "r.html"
    page.write_text(render_html(runs + scored), encoding="utf-8")
    body = _body(_dom(page, tmp_path / "profile", width=700))
    assert body["data-ready"] == "1" and body["data-js-errors"] == "0"
    assert body["data-wide-tables"] == "0"  # the extra trust column still fits 700 px


def test_localscore_in_the_report_and_compare(tmp_path: Path) -> None:
    _, scored = _runs(tmp_path)
    expected = localscore(r.result for r in scored[:len(scored) // 2]).score
    assert expected > 0
    comparison = compare_runs(scored)
    assert sorted(round(row.localscore) for row in comparison.rows) == [0, round(expected)]
    html = render_html(scored)
    section = html[html.index("<h2>LocalScore</h2>"):]
    section = section[:section.index("</table>")]
    assert ABOUT.replace("'", "&#x27;") in section
    assert f"<b class=\"num\">{expected:,.0f}</b>" in section and section.count("<tr>") == 2  # head + one row
    assert "fa off" in section and "fa on" not in section
    text = format_comparison(comparison)
    assert f": {expected:.0f}" in text and text.count("LocalScore") == 1
    assert "<h2>LocalScore</h2>" not in render_html(scored[len(scored) // 2:])


def test_each_run_s_interval_and_target_in_the_html_report(tmp_path: Path) -> None:
    from models.bench.trust.adaptive import AdaptivePlan, ci95, interval_fields

    met, missed = [100.0, 100.5, 99.5, 100.2], [100.0, 90.0, 110.0]
    with ResultsStore(tmp_path / "s.sqlite3") as store:
        ids = [store.record_result(make_result(n_prompt=512, ts=tuple(met),  # -r auto that reached ±2%
                                               **interval_fields(met, AdaptivePlan())), machine=MACHINE_A),
               store.record_result(make_result(n_prompt=0, n_gen=16, ts=tuple(missed),  # -r auto stopped by its cap
                                               **interval_fields(missed, AdaptivePlan())), machine=MACHINE_A),
               store.record_result(make_result(n_prompt=64, ts=(800.0, 810.0)), machine=MACHINE_A),  # -r 2
               store.record_result(make_result(n_prompt=128, ts=(800.0,)), machine=MACHINE_A)]  # one: none
        html = render_html(store.get_runs(ids))
    every = html[html.index("<h2>Every run</h2>"):]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row)[6] for row in re.findall(r"<tr>(.*?)</tr>", every)[1:]]
    assert f"95% CI ±{ci95(met) / statistics.fmean(met):.1%} ✓</span>" in cells[0]
    assert f"95% CI ±{ci95(missed) / 100:.1%}, target ±2% missed</span>" in cells[1]
    assert f"95% CI ±{ci95([800.0, 810.0]) / 805:.1%}</span>" in cells[2] and "target" not in cells[2]
    assert "95% CI" not in cells[3]
