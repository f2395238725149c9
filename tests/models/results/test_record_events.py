"""The real runner on the starter model, its result events committed to the store as they arrive."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from models.bench.runner import BenchRunner
from models.bench.spec import BenchJob, BenchParams, BenchTest
from models.results.compare import compare_runs
from models.machine.energy import EnergyMeter
from models.machine.hardware import machine_fingerprint
from models.results.store import ResultsStore, record_events


def test_each_result_is_committed_the_moment_it_is_reported(starter_model: Path, tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite3"
    machine = machine_fingerprint()
    seen: list[tuple[str, int]] = []

    def watch(job: Any, event: Any) -> None:
        if event.kind == "result":
            # Another connection (as after a crash) already sees this result: it was committed, not buffered.
            other = sqlite3.connect(db)
            seen.append((event.data["result"]["test"], other.execute("SELECT count(*) FROM runs").fetchone()[0]))
            other.close()

    job = BenchJob(model_path=starter_model, params=BenchParams(n_threads=1, n_batch=64, n_ubatch=32),
                   tests=(BenchTest(16, 0), BenchTest(0, 4)), repetitions=2)
    # No sensor is readable on most test machines, so a watts figure stands in where none is.
    meter = EnergyMeter(fallback_watts=30.0)
    with ResultsStore(db) as store:
        on_event = record_events(store, machine=machine, energy_meter=meter, then=watch,
                                 model_identity=lambda j: {"repo": "HuggingFaceTB/SmolLM2-135M-Instruct"})
        results = BenchRunner(on_event=on_event).run([job])
        assert [r.status for r in results] == ["ok", "ok"], results[0].error
        assert seen == [("pp16", 1), ("tg4", 2)]
        runs = store.list_runs()
    assert {r.result.test for r in runs} == {"pp16", "tg4"}
    assert len({r.job for r in runs}) == 1 and runs[0].job
    for rec in runs:
        assert rec.machine == machine and rec.model["repo"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert rec.model["quant"] == "Q4_1" and rec.model["size"] > 50_000_000
        assert len(rec.result.samples_ns) == 2 and rec.result.load_ms > 0 and rec.result.mem_peak > 0
        assert rec.energy is not None and rec.energy.joules > 0
        assert rec.energy.is_estimate == (not meter.sources)
        assert rec.energy.joules_per_token(rec.result) is not None
    row = compare_runs(runs).rows[0]
    assert row.cells["pp16"].n == 2 and row.cells["tg4"].n == 2 and "energy_tg" in row.cells
