"""Run conditions and the trust label: real causes where they can be made here (another process burning CPU),
simulated sensors where this machine has none (no swap, no GPU, no battery: said at each test)."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from models.bench.trust.conditions import ConditionWatch, _major_faults
from models.bench.runner import BenchRunner
from models.bench.spec import BenchJob, BenchParams, BenchTest
from models.bench.trust.labels import LABELS, assess, drift
from models.results.store import ResultsStore
from tests.models.gguf.factory import Shape, write_model

ROOT = Path(__file__).resolve().parents[4]
STEADY = [100.0, 100.5, 99.8, 100.2, 99.9]


def _row(samples: list[float], **extra: Any) -> dict[str, Any]:
    return {"samples_ts": samples, "status": "ok", "n_gpu_layers": 0, "gpu_info": "", **extra}


def test_steady_quiet_run_is_ok() -> None:
    assert assess(_row(STEADY), {"seconds": 2.0, "others_cpu_s": 0.1, "swap_in": 0, "swap_out": 0}) == ("ok", [])


def test_spread_over_five_percent_is_noisy() -> None:
    label, reasons = assess(_row([100.0, 120.0, 85.0, 110.0]), {})
    assert label == "noisy" and reasons[0].startswith("spread ") and "over 5%" in reasons[0]


def test_a_steady_fall_is_throttling() -> None:
    falling = [100.0, 98.0, 96.5, 95.0, 93.0, 91.0]
    assert drift(falling) == pytest.approx(-0.092, abs=0.01)
    assert drift([100.0, 96.0, 101.0, 97.0, 100.0]) == 0  # up and down is noise, not drift
    assert drift([100.0, 99.0, 98.0]) == 0  # too few repetitions to call it a trend
    label, reasons = assess(_row(falling), {})
    assert label == "throttled" and "fell 9% steadily" in reasons[0]


def test_swapping_wins_over_everything() -> None:
    # Simulated: this machine has no swap; a swapping run is made of its counters.
    label, reasons = assess(_row([100.0, 130.0, 80.0]), {"swap_in": 64 << 20, "swap_out": 0, "major_faults": 5000})
    assert label == "swapped" and len(reasons) == 3  # swap, page faults, and the spread still listed
    assert "64 MiB swapped" in reasons[0] and "5000 major page faults" in reasons[1]


def test_partial_offload_and_gpu_throttle_and_battery() -> None:
    # Simulated: no GPU and no battery here; the buffers and NVML reasons are what llama.cpp and NVML report.
    partial = _row(STEADY, n_gpu_layers=-1, gpu_info="NVIDIA H100",
                   buffers={"CUDA0:model": 4 << 30, "CPU_Mapped:model": 2 << 30})
    assert assess(partial, {})[0] == "partial offload"
    full = dict(partial, buffers={"CUDA0:model": 4 << 30, "CPU_Mapped:model": 100 << 20})
    assert assess(full, {})[0] == "ok"  # the input embedding on the CPU is normal
    assert assess(dict(partial, n_gpu_layers=20), {})[0] == "ok"  # a partial offload that was asked for
    assert assess(_row(STEADY), {"gpu_throttle": "hw thermal"}) == ("throttled", ["GPU held back: hw thermal"])
    assert assess(_row(STEADY), {"on_battery": 1.0}) == ("noisy", ["on battery power"])


def test_nvml_throttle_reasons_are_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML simulated (no GPU here): the watch reads clocks, temperature and throttle reasons of GPU 0."""
    fake = types.SimpleNamespace(
        NVML_CLOCK_SM=1, NVML_TEMPERATURE_GPU=0, nvmlInit=lambda: None, nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: 1, nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetClockInfo=lambda h, kind: 1410, nvmlDeviceGetTemperature=lambda h, kind: 83,
        nvmlDeviceGetCurrentClocksThrottleReasons=lambda h: 0x40 | 0x1)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    watch = ConditionWatch(os.getpid(), interval_s=0.05)
    watch.start()
    watch.begin("tg8")
    summary = watch.finish("tg8")
    watch.stop()
    assert summary["gpu_sm_mhz"] == 1410 and summary["gpu_temp_c"] == 83 and summary["gpu_throttle"] == "hw thermal"
    assert watch.finish("tg8") == {}  # a window is summarized once


def test_watch_reads_this_machine() -> None:
    assert isinstance(_major_faults(os.getpid()), int)  # /proc on Linux
    assert _major_faults(2**31 - 1) is None  # no such process: not measured, not an error
    watch = ConditionWatch(os.getpid(), interval_s=0.05)
    watch.start()
    watch.begin("pp8")
    sum(i * i for i in range(300_000))
    summary = watch.finish("pp8")
    watch.stop()
    assert summary["seconds"] > 0 and "others_cpu_s" in summary and "major_faults" in summary


def test_a_cpu_burning_process_makes_the_result_noisy(tmp_path: Path) -> None:
    """Real cause: two processes spinning while a real benchmark runs."""
    model = write_model(tmp_path / "tiny.gguf", Shape(n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256))
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        job = BenchJob(model_path=model, params=BenchParams(n_threads=1, n_gpu_layers=0),
                       tests=(BenchTest(n_prompt=0, n_gen=512),), repetitions=3)
        [result] = BenchRunner().run([job])
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert result.status == "ok", result.error
    c = result.conditions
    assert c["seconds"] > 0 and c["others_cpu_s"] / c["seconds"] >= 0.5
    assert result.trust == "noisy" and "busy machine: other processes used" in result.trust_reasons


def test_label_is_stored_with_the_run(tmp_path: Path) -> None:
    model = write_model(tmp_path / "tiny.gguf", Shape(n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256))
    done = subprocess.run([sys.executable, "-m", "models.cli", "bench", str(model), "-p", "16", "-n", "8", "-r", "3",
                           "-t", "1", "-o", "json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with ResultsStore(create=False) as store:
        runs = store.list_runs()
    assert len(runs) == 2 and all(r.result.trust in LABELS and r.result.conditions for r in runs)
    assert all((r.result.trust == "ok") == (r.result.trust_reasons == "") for r in runs)
