"""Energy per token and cost per 1M tokens before and after metering only the timed repetitions, on one real sweep.

Usage: .venv/bin/python benchmarks/energy_cost_check.py [--model GGUF] [--threads 1] [--reps 3]

One real sweep of the starter model (pp, tg at two lengths, pg, and depth tests) runs once; its events feed two
recorders side by side, each with its own EnergyMeter reading the same sensor:
- before: record_events, compare and cost as they were before the fix (read from git, commit BEFORE below);
- after: the working tree's.
Where RAPL or NVML is readable, that sensor is used. Where none is (containers, RAPL root-only since Linux 5.10),
a RAPL stand-in is simulated: a powercap tree whose counter a thread advances by IDLE_W watts plus CORE_W watts
per busy core of the worker, its busy time read from /proc (psutil) every 2 ms. The power model is made up; the
activity driving it (load, warm-up, depth prefill, the timed reps) is the real worker's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from models.bench.runner import BenchRunner  # noqa: E402
from models.bench.spec import BenchJob, BenchParams, BenchTest  # noqa: E402
from models.machine.energy import EnergyMeter  # noqa: E402
from models.results import compare as compare_new  # noqa: E402
from models.results import cost as cost_new  # noqa: E402
from models.results.store import ResultsStore, record_events  # noqa: E402
from models.settings import Settings  # noqa: E402

BEFORE = "3124cdb^"  # the last commit with the lap-share energy, pooled comparison and energy_tg cost
IDLE_W, CORE_W = 8.0, 12.0


def _source_at(commit: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def _old_record_events() -> Any:
    """The record_events of BEFORE, run against today's store (only the function: the store itself moved on)."""
    from models.results import store

    source = _source_at(BEFORE, "models/results/store.py")
    namespace = dict(vars(store))
    exec(compile("from __future__ import annotations\n" + source[source.index("def record_events("):],
                 f"{BEFORE}:models/results/store.py", "exec"), namespace)
    return namespace["record_events"]


def _module_at(commit: str, path: str, name: str) -> types.ModuleType:
    source = _source_at(commit, path)
    module = types.ModuleType(name)
    module.__file__ = f"{commit}:{path}"
    sys.modules[name] = module  # dataclasses resolve their module by name
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


class SimulatedRapl:
    """A powercap tree for EnergyMeter, its package counter driven by the worker's real CPU use."""

    def __init__(self, root: Path) -> None:
        self.zone = root / "intel-rapl:0"
        self.zone.mkdir(parents=True)
        (self.zone / "name").write_text("package-0\n")
        (self.zone / "max_energy_range_uj").write_text("262143328850\n")
        self.pid: int | None = None
        self._joules = 0.0
        self._cpu = 0.0
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._write()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _busy_seconds(self) -> float:
        if self.pid is None:
            return self._cpu
        try:
            times = psutil.Process(self.pid).cpu_times()
            return times.user + times.system
        except psutil.Error:  # the worker has ended: it uses nothing any more
            return self._cpu

    def _write(self) -> None:
        tmp = self.zone / "energy_uj.tmp"
        tmp.write_text(f"{int(self._joules * 1e6)}\n")
        os.replace(tmp, self.zone / "energy_uj")

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            now, cpu = time.monotonic(), self._busy_seconds()
            busy, self._cpu = max(0.0, cpu - self._cpu), cpu
            self._joules += IDLE_W * (now - self._last) + CORE_W * busy
            self._last = now
            self._write()

    def watch(self, job: Any, event: Any) -> None:
        if event.kind == "started":
            self.pid = int(event.data.get("pid") or 0) or None
            self._cpu = self._busy_seconds()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a GGUF file (default: the starter model)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    if args.model is None:
        from models.hub.starter import ensure_starter_model

        args.model = ensure_starter_model()
    old_record_events = _old_record_events()
    compare_old = _module_at(BEFORE, "models/results/compare.py", "before_compare")
    sys.modules["models.results.compare_before"] = compare_old
    cost_old = _module_at(BEFORE, "models/results/cost.py", "before_cost")
    from models.machine.hardware import machine_fingerprint

    machine = machine_fingerprint()
    tests = (BenchTest(128, 0), BenchTest(0, 8), BenchTest(0, 80), BenchTest(64, 16), BenchTest(128, 0, 512),
             BenchTest(0, 80, 512))
    job = BenchJob(model_path=args.model, params=BenchParams(n_threads=args.threads, n_batch=128, n_ubatch=128,
                                                             n_gpu_layers=0),
                   tests=tests, repetitions=args.reps)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        real = EnergyMeter()
        rapl = None if real.sources else SimulatedRapl(work / "powercap")

        def meter() -> EnergyMeter:
            return EnergyMeter() if rapl is None else EnergyMeter(powercap_root=work / "powercap", use_nvml=False)

        sensor = "+".join(real.sources) if rapl is None else \
            f"simulated RAPL ({IDLE_W:g} W idle + {CORE_W:g} W per busy core of the real worker)"
        with ResultsStore(work / "before.sqlite3") as before, ResultsStore(work / "after.sqlite3") as after:
            record_before = old_record_events(before, machine=machine, energy_meter=meter())
            record_after = record_events(after, machine=machine, energy_meter=meter())

            def on_event(j: Any, event: Any) -> None:
                if rapl is not None:
                    rapl.watch(j, event)
                record_before(j, event)
                record_after(j, event)

            try:
                results = BenchRunner(on_event=on_event).run([job])
            finally:
                if rapl is not None:
                    rapl.close()
            failed = [r for r in results if r.status != "ok"]
            if failed:
                print(f"A test failed: {failed[0].error}", file=sys.stderr)
                return 1
            runs_before, runs_after = before.list_runs(), after.list_runs()
    print(f"Model {args.model.name}, {args.threads} thread(s), {args.reps} reps; sensor: {sensor}\n")
    print(f"{'test':<16} {'t/s':>9} {'timed s':>8} {'J before':>9} {'J after':>9} {'J/tok before':>13} "
          f"{'J/tok after':>12} {'after/before':>12}")
    by_test = {r.result.test: r for r in runs_before}
    for rec in sorted(runs_after, key=lambda r: r.id):
        old = by_test[rec.result.test]
        timed = sum(rec.result.samples_ns) / 1e9
        jt_old, jt_new = old.energy.joules_per_token(old.result), rec.energy.joules_per_token(rec.result)
        print(f"{rec.result.test:<16} {rec.result.avg_ts:>9.1f} {timed:>8.3f} {old.energy.joules:>9.3f} "
              f"{rec.energy.joules:>9.3f} {jt_old:>13.5f} {jt_new:>12.5f} {jt_new / jt_old:>12.3f}")
    settings = Settings(electricity_price_per_kwh=0.30, hardware_cost=1000.0, api_price_per_mtok=0.5)
    (row_old,) = compare_old.compare_runs(runs_before).rows
    (row_new,) = compare_new.compare_runs(runs_after).rows
    c_old = cost_old.row_cost(row_old, settings=settings)
    c_new = cost_new.row_cost(row_new, settings=settings)
    tg_old = sorted((k for k in row_old.cells if k.startswith("tg")), key=lambda k: ("@" in k, k))[0]
    print(f"\nCost per 1M generated tokens ({settings.electricity_price_per_kwh} EUR/kWh, hardware "
          f"{settings.hardware_cost:g} EUR):")
    print(f"  before: rate of {tg_old} (picked by name) {c_old.tokens_per_second:.1f} t/s, energy_tg "
          f"(pp, pg, tg and depth tests averaged) {c_old.joules_per_token:.5f} J/token -> electricity "
          f"{c_old.energy_per_mtok:.5f}, total {c_old.total_per_mtok:.4f} EUR")
    print(f"  after:  {c_new.test} (smallest depth, longest) {c_new.tokens_per_second:.1f} t/s, its own energy "
          f"{c_new.joules_per_token:.5f} J/token -> electricity {c_new.energy_per_mtok:.5f}, total "
          f"{c_new.total_per_mtok:.4f} EUR")
    print(f"  electricity after/before: {c_new.energy_per_mtok / c_old.energy_per_mtok:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
