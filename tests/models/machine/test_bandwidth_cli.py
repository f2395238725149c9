"""tokenometer hardware shows the measured bandwidth; tokenometer fit the predicted speed (real runs, small buffer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.cli import main
from models.machine.bandwidth import machine_bandwidth

MIB = 1024 * 1024


def test_hardware_shows_the_stored_bandwidth(capsys: pytest.CaptureFixture[str]) -> None:
    stored = machine_bandwidth(buffer_bytes=16 * MIB, repeats=2, threads=1)
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
    machine_bandwidth(buffer_bytes=16 * MIB, repeats=2, threads=1)
    assert main(["fit", str(starter_model)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("Speed "))
    assert "tg128 ≈ " in line and " t/s here ± " in line and "learned from 0 models measured here" in line
    assert main(["fit", str(starter_model), "--json"]) == 0
    speed = json.loads(capsys.readouterr().out)["speed"]
    assert 0 < speed["tg_low"] < speed["tg"] < speed["tg_high"] and speed["tg"] < speed["tg_ceiling"]
    assert main(["fit", str(starter_model), "--no-speed"]) == 0
    assert "Speed " not in capsys.readouterr().out
