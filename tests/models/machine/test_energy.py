"""Energy: RAPL counters (in a fake sysfs tree: /sys/class/powercap is absent or root-only on test machines),
NVML (a fake pynvml stands in for the GPU-present path only), and the watts-times-time estimate."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from models.machine.energy import EnergyMeter, RepetitionEnergy, rapl_zones


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _zone(root: Path, dirname: str, name: str, energy_uj: int, max_range: int = 262_143_328_850) -> Path:
    zone = root / dirname
    zone.mkdir(parents=True)
    (zone / "name").write_text(name + "\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    return zone


def test_rapl_counts_packages_and_dram_and_handles_wraparound(tmp_path: Path) -> None:
    pkg = _zone(tmp_path, "intel-rapl:0", "package-0", 262_143_000_000)  # 328.85 J before the wrap
    _zone(tmp_path, "intel-rapl:0:0", "core", 5)  # inside the package: would count twice
    dram = _zone(tmp_path, "intel-rapl:0:1", "dram", 1_000_000)
    _zone(tmp_path, "intel-rapl:1", "psys", 7)  # the whole platform: would count twice
    assert [z.name for z in rapl_zones(root=tmp_path)] == ["package-0", "dram@intel-rapl:0:1"]
    clock = FakeClock()
    meter = EnergyMeter(powercap_root=tmp_path, use_nvml=False, clock=clock)
    assert meter.sources == ["rapl"] and meter.describe() == "measured: rapl"
    meter.start()
    (pkg / "energy_uj").write_text("671150\n")  # wrapped: 328.85 J + 0.67115 J
    (dram / "energy_uj").write_text("3500000\n")
    clock.now += 2.0
    lap = meter.lap()
    assert lap is not None and not lap.is_estimate and lap.source == "rapl"
    assert lap.parts["package-0"] == pytest.approx((262_143_328_850 - 262_143_000_000 + 671_150) / 1e6)
    assert lap.parts["dram@intel-rapl:0:1"] == pytest.approx(2.5)
    assert lap.seconds == 2.0 and lap.watts == pytest.approx(lap.joules / 2)
    (pkg / "energy_uj").write_text("10671150\n")
    clock.now += 1.0
    final = meter.stop()
    assert final is not None and final.joules == pytest.approx(10.0) and final.seconds == 1.0
    assert not meter.running


def test_unreadable_rapl_counts_as_not_available(tmp_path: Path) -> None:
    zone = _zone(tmp_path, "intel-rapl:0", "package-0", 10)
    # Root reads through mode bits, so unreadability is made real another way: energy_uj is not a file.
    (zone / "energy_uj").unlink()
    (zone / "energy_uj").mkdir()
    meter = EnergyMeter(powercap_root=tmp_path, use_nvml=False)
    assert meter.sources == [] and not meter.available
    meter.start()
    assert meter.stop() is None
    assert "not available" in meter.describe()


def test_no_sensor_uses_the_users_watts_figure_marked_as_an_estimate(tmp_path: Path) -> None:
    clock = FakeClock()
    meter = EnergyMeter(fallback_watts=65.0, powercap_root=tmp_path, use_nvml=False, clock=clock)
    assert meter.available and meter.describe().startswith("estimate: 65 W")
    meter.start()
    clock.now += 4.0
    reading = meter.stop()
    assert reading is not None
    assert (reading.joules, reading.is_estimate, reading.source) == (260.0, True, "estimate (65 W)")


def _fake_pynvml(*, energy_mj: list[int] | None, power_mw: list[int]) -> types.ModuleType:
    """Only the GPU-present path is faked; with no NVIDIA GPU here there is no real NVML to call."""
    module = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    module.NVMLError = NVMLError
    module.nvmlInit = lambda: None
    module.nvmlDeviceGetCount = lambda: 1
    module.nvmlDeviceGetHandleByIndex = lambda index: f"handle{index}"

    def total_energy(handle: str) -> int:
        if energy_mj is None:
            raise NVMLError("Not Supported")
        return energy_mj[0]

    module.nvmlDeviceGetTotalEnergyConsumption = total_energy
    module.nvmlDeviceGetPowerUsage = lambda handle: power_mw[0]
    return module


def test_nvml_total_energy_counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = [5_000_000]
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(energy_mj=counter, power_mw=[0]))
    meter = EnergyMeter(powercap_root=tmp_path, clock=FakeClock())
    assert meter.sources == ["nvml"]
    meter.start()
    counter[0] += 42_500  # mJ
    reading = meter.stop()
    assert reading is not None and reading.parts == {"gpu0": pytest.approx(42.5)} and not reading.is_estimate


def test_nvml_power_sampling_where_the_gpu_has_no_energy_counter(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    power = [100_000]  # mW
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(energy_mj=None, power_mw=power))
    clock = FakeClock()
    meter = EnergyMeter(powercap_root=tmp_path, clock=clock, sample_interval_s=0)  # samples taken by hand
    meter.start()
    clock.now += 2.0
    power[0] = 200_000
    meter._nvml.poll()  # 2 s between 100 W and 200 W: 300 J
    clock.now += 1.0
    reading = meter.stop()  # 1 s at 200 W: 200 J
    assert reading is not None and reading.joules == pytest.approx(500.0) and reading.source == "nvml"


def test_this_machines_real_sensors_give_a_reading_or_none() -> None:
    meter = EnergyMeter(use_nvml=True)
    meter.start()
    reading = meter.stop()
    assert (reading is None) == (not meter.sources)
    if reading is not None:
        assert reading.joules >= 0 and not reading.is_estimate


def test_nvml_sampler_thread_runs_and_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(energy_mj=None, power_mw=[100_000]))
    clock = FakeClock()
    meter = EnergyMeter(powercap_root=tmp_path, clock=clock, sample_interval_s=0.01)
    meter.start()
    first = meter._nvml._thread
    assert first is not None and first.is_alive()
    meter.start()  # started again without a stop: the old sampler ends, one new one runs
    assert not first.is_alive() and meter._nvml._thread.is_alive()
    clock.now += 2.0
    reading = meter.stop()
    # Constant 100 W: the trapezoid integral is 200 J wherever the thread's samples fell.
    assert reading is not None and reading.joules == pytest.approx(200.0)
    assert meter._nvml._thread is None


def test_repetition_energy_counts_only_the_timed_repetitions(tmp_path: Path) -> None:
    pkg = _zone(tmp_path, "intel-rapl:0", "package-0", 0)
    clock = FakeClock()
    reps = RepetitionEnergy(EnergyMeter(powercap_root=tmp_path, use_nvml=False, clock=clock))

    def spend(joules: float, seconds: float) -> None:
        (pkg / "energy_uj").write_text(f"{int((pkg / 'energy_uj').read_text()) + int(joules * 1e6)}\n")
        clock.now += seconds

    reps.meter.start()
    spend(300.0, 3.0)  # model load and warm-up: not the test's
    for _ in range(2):
        spend(50.0, 1.0)  # depth prefill before each rep: not timed
        reps.begin()
        spend(4.0, 0.25)  # the timed repetition
        reps.end()
    reading = reps.take()
    assert reading is not None and reading.joules == pytest.approx(8.0) and reading.seconds == pytest.approx(0.5)
    assert reading.parts == {"package-0": pytest.approx(8.0)} and reading.source == "rapl"
    reps.begin()
    spend(9.0, 1.0)  # a rep cut off by a cancel: no end, so it is not counted
    assert reps.take() is None
    reps.end()  # an end with no rep begun is ignored
    assert reps.take() is None
