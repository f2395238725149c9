"""Quality results in the reports: real quality runs of the starter model against a Q8_0 of it, exported in every
format the Quality page offers (and by `tokenometer report`), with the answers beside them; nothing to export, or
no run of the measured files, refused in words."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from models.cli import main
from models.errors import ReportError
from models.results.measurements import list_measurements
from models.results.quality_report import export_quality_report, quality_report_parts
from models.results.store import ResultsStore
from tests.models.results.quants import q8_0  # noqa: F401

TEXT = Path(__file__).parents[1] / "bench" / "data" / "public_domain.txt"


def test_quality_results_export_beside_their_runs_and_answers(starter_model: Path, q8_0: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    with ResultsStore() as store:
        with pytest.raises(ReportError, match="no quality result or answer is kept yet"):
            export_quality_report(store, tmp_path / "empty.md")
    assert main(["quality", str(starter_model), "--ref", str(q8_0), "--text", str(TEXT), "-c", "64", "--chunks", "2",
                 "-t", "2"]) == 0
    assert main(["answers", str(starter_model), str(q8_0), "--prompt", "Name a colour.", "-n", "4", "-t", "2"]) == 0
    with ResultsStore() as store:
        with pytest.raises(ReportError, match="never benchmarked"):
            export_quality_report(store, tmp_path / "norun.md")
    assert not (tmp_path / "norun.md").exists()
    assert main(["bench", str(starter_model), "-p", "16", "-n", "4", "-r", "1", "-t", "2"]) == 0
    capsys.readouterr()
    with ResultsStore() as store:
        quality = {m.model["file"]: m for m in list_measurements(store, kind="quality")}
        runs, measurements = quality_report_parts(store)
        assert {run.model["file"] for run in runs} == {starter_model.name} and len(runs) == 2  # pp16 and tg4
        assert sorted(m.kind for m in measurements) == ["answers", "answers", "quality", "quality"]
        said = {fmt: export_quality_report(store, tmp_path / f"q.{fmt}") for fmt in ("md", "json", "csv", "html")}
    assert said["md"] == f"Saved 2 quality results, 2 answers and 2 runs to {tmp_path / 'q.md'}"
    mine, ref = quality[starter_model.name].data, quality[q8_0.name].data
    assert mine["kld"]["kld_mean"] > 0

    md = (tmp_path / "q.md").read_text()
    assert "## Quality" in md and "## Answers" in md and "## Capacity" not in md  # no load test: no such heading
    row = next(line for line in md.splitlines() if line.startswith(f"| {starter_model.name} |"))
    assert f"{mine['ppl']:.4f} ± {mine['ppl_err']:.4f}" in row and f"{mine['kld']['kld_mean']:.5f} ± " in row
    assert f"| {mine['bits_per_byte']:.4f} |" in row and "public_domain.txt, 2 × 64 tokens" in row
    ref_row = next(line for line in md.splitlines() if line.startswith(f"| {q8_0.name} |"))
    assert "0 (the reference)" in ref_row and f"{ref['ppl']:.4f}" in ref_row

    objects = [item for item in json.loads((tmp_path / "q.json").read_text()) if item.get("measurement") == "quality"]
    assert {o["model_filename"]: o["result"]["ppl"] for o in objects} == {starter_model.name: mine["ppl"],
                                                                         q8_0.name: ref["ppl"]}

    rows = [r for r in csv.DictReader((tmp_path / "q.measurements.csv").open(newline="")) if r["kind"] == "quality"]
    by_file = {r["model_filename"]: r for r in rows}
    assert float(by_file[starter_model.name]["kld_mean"]) == pytest.approx(mine["kld"]["kld_mean"], rel=1e-6)
    assert float(by_file[q8_0.name]["bits_per_byte"]) == pytest.approx(ref["bits_per_byte"], rel=1e-6)
    assert by_file[starter_model.name]["reference_model"] == q8_0.name and by_file[q8_0.name]["role"] == "reference"

    html = (tmp_path / "q.html").read_text()
    assert "<h2>Quality</h2>" in html and "<h2>Answers</h2>" in html and "<h2>Capacity</h2>" not in html
    assert f"{mine['ppl']:.4f} ± {mine['ppl_err']:.4f}" in html

    # `tokenometer report all` carries them too.
    capsys.readouterr()
    assert main(["report", "all", "-o", str(tmp_path / "all.md")]) == 0
    assert "## Quality" in (tmp_path / "all.md").read_text()
    # What it says it wrote is counted by kind: no quality result is called a load test.
    assert "Wrote 2 runs, 2 quality results and 2 answers to " in capsys.readouterr().out
