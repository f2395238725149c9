"""tokenometer hardware shows the measured bandwidth; tokenometer fit the predicted speed (real runs, small buffer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.cli import main
from models.machine.bandwidth import machine_bandwidth

MIB = 1024 * 1024


def test_hardware_shows_the_stored_bandwidth(capsys: pytest.CaptureFixture[str]) -> None:
    stored = machine_bandwidth(buffer_bytes=16 * MIB, repeats=2, threads=1, min_seconds=0)
    assert stored.cpu is not None
    assert main(["hardware", "--no-llama"]) == 0
    out = capsys.readouterr().out
    assert f"Bandwidth  CPU {stored.cpu.read / 1e9:.1f} GB/s read" in out and "(1 threads)" in out
    assert main(["hardware", "--no-llama", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["bandwidth"]["cpu"]["read"] == stored.cpu.read and "cpu" in data


def test_hardware_without_bandwidth_says_not_measured(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hardware", "--no-llama", "--no-bandwidth"]) == 0
    assert "Bandwidth  not measured" in capsys.readouterr().out


def test_fit_shows_the_predicted_speed(starter_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    machine_bandwidth(buffer_bytes=16 * MIB, repeats=2, threads=1, min_seconds=0)
    assert main(["fit", str(starter_model)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("Speed "))
    assert "tg128 ≈ " in line and " t/s here ± " in line and "learned from 0 models measured here" in line
    assert line.endswith(" t/s)") and "(compute limit " in line  # this CPU's GEMM peak, measured with the bandwidth
    assert main(["fit", str(starter_model), "--json"]) == 0
    speed = json.loads(capsys.readouterr().out)["speed"]
    assert 0 < speed["tg_low"] < speed["tg"] < speed["tg_high"] and speed["tg"] < speed["tg_ceiling"]
    assert main(["fit", str(starter_model), "--no-speed"]) == 0
    assert "Speed " not in capsys.readouterr().out


def test_fit_shows_the_memory_estimate_error_from_history(starter_model: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from models.bench.spec import BenchResult
    from models.machine.hardware import machine_fingerprint
    from models.results.store import ResultsStore

    machine_bandwidth(buffer_bytes=16 << 20, repeats=2, threads=1, min_seconds=0)
    assert main(["fit", str(starter_model)]) == 0
    assert "History " not in capsys.readouterr().out  # nothing measured yet
    result = BenchResult(model_type="llama 135M Q4_1", model_filename=str(starter_model), n_gen=16, avg_ts=50.0,
                         buf_model=100, buf_kv=50, buf_compute=40, buf_output=10, fit_estimate={"total": 220})
    with ResultsStore() as store:
        store.record_result(result, machine=machine_fingerprint())
    assert main(["fit", str(starter_model)]) == 0
    out = capsys.readouterr().out
    assert "History    the estimate was +10% off llama.cpp's buffers on average for llama here (1 runs of 1 models" \
        in out
