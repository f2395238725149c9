"""Sizes and rates formatted once for the CLI, the GUI and reports: binary units, as llama.cpp logs them."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

from models.units import fmt_bytes, fmt_count, fmt_duration, fmt_ms, fmt_rate, fmt_speed


def test_sizes_in_binary_units_as_llama_cpp_logs_them() -> None:
    assert fmt_bytes(512) == "512 B" and fmt_bytes(1024) == "1.00 KiB"
    assert fmt_bytes(72 * 2**20) == "72.0 MiB"  # llama.cpp: "CPU_Mapped model buffer size = 72.00 MiB"
    assert fmt_bytes(98_362_432) == "93.8 MiB" and fmt_bytes(int(1.25 * 2**30)) == "1.25 GiB"
    assert fmt_bytes(None) == "–" and fmt_bytes(float("nan")) == "–"
    assert fmt_bytes(-3 * 2**30) == "-3.00 GiB"  # a headroom below zero keeps its sign
    assert fmt_speed(12.5 * 2**20) == "12.5 MiB/s" and fmt_speed(0) == "–"


def test_rates_times_and_counts() -> None:
    assert fmt_rate(123.45, 1.2) == "123.5 ± 1.2 t/s" and fmt_rate(None) == "–"
    assert fmt_ms(35.0) == "35.0 ms" and fmt_ms(1500) == "1.50 s"
    assert fmt_duration(185) == "3 min 05 s" and fmt_count(134_515_008) == "135 M"


def test_the_cli_prints_sizes_as_the_gui_does(starter_model: Path) -> None:
    from models.cli import main
    from models.hub.library import add_folder

    add_folder(starter_model.parent)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["hardware"]) == 0
        assert main(["models", "--no-headers"]) == 0
    lines = out.getvalue().splitlines()
    ram = next(line for line in lines if line.startswith("RAM"))
    assert "GiB" in ram and " GB" not in ram
    # The local model list printed decimal GB/MB (98.36 MB) where the GUI showed binary units.
    listed = next(line for line in lines if starter_model.name in line)
    assert fmt_bytes(starter_model.stat().st_size) in listed and " MB " not in listed
