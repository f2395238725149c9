"""The real runner on the starter model, its result events committed to the store as they arrive."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

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
    assert row.cells["pp16"].n == 2 and row.cells["tg4"].n == 2 and "energy tg4" in row.cells


class _RaplStandIn:
    """A powercap tree whose package counter a thread advances at a fixed power, plus bursts added by hand.

    This machine has no readable RAPL (none in containers, root-only on hosts), so the sensor is simulated: the
    same sysfs layout EnergyMeter reads, its counter moving with real time while the real worker runs.
    """

    def __init__(self, root: Path, *, watts: float) -> None:
        import threading
        import time

        self.zone = root / "intel-rapl:0"
        self.zone.mkdir(parents=True)
        (self.zone / "name").write_text("package-0\n")
        (self.zone / "max_energy_range_uj").write_text("262143328850\n")
        self.watts, self.extra_j, self._t0 = watts, 0.0, time.monotonic()
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._write()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        import os
        import time

        with self._lock:
            joules = self.watts * (time.monotonic() - self._t0) + self.extra_j
            tmp = self.zone / "energy_uj.tmp"
            tmp.write_text(f"{int(joules * 1e6)}\n")
            os.replace(tmp, self.zone / "energy_uj")  # a reader never sees a half-written file

    def _run(self) -> None:
        while not self._stop.wait(0.0005):
            self._write()

    def burst(self, joules: float) -> None:
        with self._lock:
            self.extra_j += joules
        self._write()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def test_energy_is_metered_over_the_timed_repetitions_only(starter_model: Path, tmp_path: Path) -> None:
    watts, burst = 20.0, 500.0
    rapl = _RaplStandIn(tmp_path / "powercap", watts=watts)
    bursts: list[str] = []

    def untimed_work(job: Any, event: Any) -> None:
        # Load, warm-up and depth prefill draw power too; here each costs a burst the timed reps must not carry.
        if event.kind == "progress" and event.data.get("phase") in ("load", "warmup", "depth"):
            bursts.append(event.data["phase"])
            rapl.burst(burst)

    job = BenchJob(model_path=starter_model, params=BenchParams(n_threads=1, n_batch=64, n_ubatch=32),
                   tests=(BenchTest(64, 0), BenchTest(0, 8), BenchTest(32, 0, 64)), repetitions=2)
    meter = EnergyMeter(powercap_root=tmp_path / "powercap", use_nvml=False)
    assert meter.sources == ["rapl"]
    try:
        with ResultsStore(tmp_path / "results.sqlite3") as store:
            results = BenchRunner(on_event=record_events(store, machine=machine_fingerprint(), energy_meter=meter,
                                                         then=untimed_work)).run([job])
            assert [r.status for r in results] == ["ok"] * 3, results[0].error
            runs = {r.result.test: r for r in store.list_runs()}
    finally:
        rapl.close()
    # The depth is filled once and its state restored before each rep, or filled before each rep: at least once.
    assert bursts.count("load") == 1 and bursts.count("warmup") == 3 and bursts.count("depth") >= 1
    for test in ("pp64", "tg8", "pp32 @ d64"):
        rec = runs[test]
        timed_s = sum(rec.result.samples_ns) / 1e9
        assert rec.energy is not None and rec.energy.source == "rapl" and not rec.energy.is_estimate
        # The metered windows are the reps as the parent sees them, each end a little late (more so on a loaded
        # machine), never the gaps between them; the gaps here last seconds (model load, warm-up, prefill).
        assert 0 < rec.energy.seconds < timed_s + 0.3 * len(rec.result.samples_ns), (test, rec.energy, timed_s)
        # The stand-in's writer thread may lag behind on a busy machine (2 reps, 2 reads each).
        assert rec.energy.joules == pytest.approx(watts * rec.energy.seconds, rel=0.02, abs=watts * 0.1), test
        assert rec.energy.joules < burst / 10  # no share of any burst outside the timed reps
