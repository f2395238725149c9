"""Memory bandwidth: the CPU test really runs (small buffers), NVML is simulated (no GPU in these tests)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
from typing import Any

import pytest

from models.machine import bandwidth as bw
from models.machine.bandwidth import (CpuBandwidth, GpuBandwidth, MachineBandwidth, load_bandwidth,
                                      machine_bandwidth, measure_cpu_bandwidth, nvidia_bandwidth)
from models.machine.quiet import QUIET_CORES

MIB = 1024 * 1024


def test_cpu_test_reads_and_copies_every_block() -> None:
    result = measure_cpu_bandwidth(threads=2, buffer_bytes=32 * MIB, repeats=3, min_seconds=0)
    assert result.threads == 2 and result.buffer_bytes == 32 * MIB and result.repeats == 3
    assert len(result.read_samples) == 3 and len(result.copy_samples) == 3
    assert result.read == max(result.read_samples) > 0 and result.copy == max(result.copy_samples) > 0
    # 32 MiB read at the best rate cannot take less than a microsecond: a rate that says so read nothing.
    assert result.read < 32 * MIB / 1e-6
    assert 0 <= result.read_spread < 1
    assert result.seconds > 0 and result.measured_at


def test_passes_go_on_for_the_whole_window() -> None:
    # Repeatability comes from many passes spread over time (one burst of another program spoils a few of them,
    # not all); a short window with few passes asked still runs for its length.
    result = measure_cpu_bandwidth(threads=1, buffer_bytes=16 * MIB, repeats=2, min_seconds=0.4)
    assert result.repeats == len(result.read_samples) == len(result.copy_samples) > 2
    assert result.seconds >= 0.4
    assert result.read == max(result.read_samples)
    assert 0 <= result.halves_gap < 1 and result.steady == (result.halves_gap < bw.UNSTEADY)
    capped = measure_cpu_bandwidth(threads=1, buffer_bytes=16 * MIB, repeats=100000, min_seconds=0, max_seconds=0.2)
    assert 0 < capped.repeats < 100000 and capped.seconds < 5  # max_seconds ends it


def test_a_program_using_the_cpu_all_along_is_waited_out_then_said() -> None:
    # A real competitor: a process burning a core (this machine's other programs come on top of it). The window
    # goes on past min_seconds waiting for a quiet stretch, up to max_seconds, and says how busy it stayed.
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        busy = machine_bandwidth(refresh=True, threads=1, buffer_bytes=16 * MIB, repeats=2, min_seconds=0.3,
                                 max_seconds=1.2)
    finally:
        burner.kill()
        burner.wait()
    assert busy.cpu is not None and busy.cpu.others_cores >= QUIET_CORES
    assert busy.cpu.seconds >= 1.2  # ran to max_seconds: no quiet stretch came
    assert any(n.startswith("other programs used ") and "all through the CPU bandwidth test" in n for n in busy.notes)
    unknown = measure_cpu_bandwidth(threads=1, buffer_bytes=16 * MIB, repeats=2, min_seconds=0)
    assert unknown.others_cores == -1 and unknown.repeats == 2  # no window: nothing waited for, nothing read


def test_halves_gap_flags_a_machine_that_changed() -> None:
    assert bw._halves_gap([10.0, 10.0, 10.0, 10.0]) == 0
    assert bw._halves_gap([10.0, 9.0, 7.0, 7.5]) == pytest.approx(0.25)
    assert bw._halves_gap([5.0]) == 0
    assert not CpuBandwidth(read=1, copy=1, threads=1, buffer_bytes=1, repeats=1, halves_gap=0.25).steady


def test_automatic_buffer_is_far_beyond_the_cache() -> None:
    assert bw.default_buffer(0) == 256 * MIB
    assert bw.default_buffer(32 * MIB) == 256 * MIB  # this machine's 32 MiB L3: 8 x
    assert bw.default_buffer(96 * MIB) == 768 * MIB
    assert bw.default_buffer(256 * MIB) == 1024 * MIB  # capped: 2 GiB with the copy targets


def test_one_thread_and_many_threads_both_work() -> None:
    one = measure_cpu_bandwidth(threads=1, buffer_bytes=16 * MIB, repeats=2, min_seconds=0)
    four = measure_cpu_bandwidth(threads=4, buffer_bytes=16 * MIB, repeats=2, min_seconds=0)
    assert one.threads == 1 and four.threads == 4
    assert four.buffer_bytes == 16 * MIB  # split between the threads, not multiplied


@pytest.mark.parametrize("options, match", [
    (dict(threads=0), "at least 1"), (dict(repeats=0), "at least 1"),
    (dict(threads=8, buffer_bytes=4 * MIB), "too small for 8 threads"),
    (dict(min_seconds=-1), "min_seconds must be between"), (dict(min_seconds=2, max_seconds=1), "between 0 and"),
])
def test_bad_options_are_refused(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        measure_cpu_bandwidth(**{"buffer_bytes": 16 * MIB, "repeats": 1, **options})


def test_measurement_is_stored_and_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    first = machine_bandwidth(buffer_bytes=16 * MIB, repeats=2, threads=1, min_seconds=0)
    assert first.cpu is not None and bw.cache_path().is_file()
    again = machine_bandwidth(measure=False)
    assert again.cpu is not None and again.cpu.read == first.cpu.read  # the stored figure, not a new one
    fresh = machine_bandwidth(refresh=True, buffer_bytes=16 * MIB, repeats=2, threads=2, min_seconds=0)
    assert fresh.cpu is not None and fresh.cpu.threads == 2
    # Another machine's (or an old) measurement is no measurement.
    assert load_bandwidth(key="another machine") is None
    assert load_bandwidth(max_age_days=-1) is None


@pytest.mark.parametrize("content", ["{not json", "[]", json.dumps({"cpu": {"read": 1}}), "\x00\x01"])
def test_unreadable_stored_measurement_is_no_measurement(content: str) -> None:
    path = bw.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    assert load_bandwidth() is None
    assert machine_bandwidth(measure=False).cpu is None


def test_no_measurement_says_not_measured() -> None:
    empty = MachineBandwidth()
    assert empty.cpu_read == 0 and empty.gpu_peak == 0
    assert empty.summary() == "not measured"
    assert bw.fmt_rate_bytes(0) == "not measured"


def test_json_round_trip() -> None:
    cpu = CpuBandwidth(read=20e9, copy=25e9, threads=4, buffer_bytes=MIB, repeats=1, read_samples=[20e9])
    value = MachineBandwidth(cpu=cpu, gpus=[GpuBandwidth(0, "X", 1e12, 1000, 4000)], machine="m", notes=["n"])
    assert MachineBandwidth.from_json(json.loads(json.dumps(value.to_json()))) == value
    # A measurement stored before the halves gap was recorded still reads (as "not known": -1, steady).
    old = {"cpu": {k: v for k, v in value.to_json()["cpu"].items() if k != "halves_gap"}}
    assert MachineBandwidth.from_json(old).cpu.halves_gap == -1  # type: ignore[union-attr]
    assert "20.0 GB/s read" in value.summary() and "GPU 0 1000.0 GB/s peak" in value.summary()


class FakeNVML(types.SimpleNamespace):
    """Stands in for pynvml: no GPU is available to these tests. Clocks and widths as an H100 SXM and an
    RTX 4090 report them through NVML."""

    NVML_CLOCK_MEM = 2

    def __init__(self, *, fail_init: bool = False, no_width: bool = False) -> None:
        super().__init__(fail_init=fail_init, no_width=no_width, shut=False)

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> Any:
        return [b"NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090"][handle]

    def nvmlDeviceGetMaxClockInfo(self, handle: int, kind: int) -> int:
        assert kind == self.NVML_CLOCK_MEM
        return [2619, 10501][handle]

    def nvmlDeviceGetMemoryBusWidth(self, handle: int) -> int:
        if self.no_width and handle == 1:
            raise RuntimeError("Not Supported")
        return [5120, 384][handle]


def test_nvidia_peak_from_clock_and_bus_width() -> None:
    notes: list[str] = []
    nvml = FakeNVML()
    gpus = nvidia_bandwidth(notes, nvml=nvml)
    assert [g.name for g in gpus] == ["NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090"]
    assert gpus[0].peak == pytest.approx(3.35e12, rel=0.01)  # the H100 SXM data sheet
    assert gpus[1].peak == pytest.approx(1.008e12, rel=0.01)  # the RTX 4090 data sheet
    assert nvml.shut and not notes


def test_nvml_missing_or_partial_is_a_normal_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    notes: list[str] = []
    assert nvidia_bandwidth(notes, nvml=FakeNVML(fail_init=True)) == [] and notes == []
    gpus = nvidia_bandwidth(notes, nvml=FakeNVML(no_width=True))
    assert len(gpus) == 1 and "GPU 1: memory clock or bus width not readable (Not Supported)" in notes
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    notes.clear()
    assert nvidia_bandwidth(notes) == [] and "not installed" in notes[0]
