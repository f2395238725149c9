"""Energy used during a benchmark: RAPL counters, NVIDIA's NVML, or a user's watts figure as an estimate."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

POWERCAP_ROOT = Path("/sys/class/powercap")


@dataclass(frozen=True)
class EnergyReading:
    """Energy over one interval. `is_estimate` is True when it came from a watts figure, not a sensor."""

    joules: float
    source: str  # "rapl", "nvml", "rapl+nvml" or "estimate (65 W)"
    is_estimate: bool
    seconds: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)  # joules per sensor ("package-0", "dram", "gpu0")

    @property
    def watts(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class RaplZone:
    """One RAPL zone we count: a CPU package or its DRAM (psys and core/uncore would count twice)."""

    name: str
    energy_path: Path
    max_range_uj: int

    def read_uj(self) -> int:
        return int(self.energy_path.read_text().strip())


def rapl_zones(*, root: Path = POWERCAP_ROOT) -> list[RaplZone]:
    """The readable package and DRAM zones; empty where RAPL is absent or (as since Linux 5.10) root-only."""
    zones: list[RaplZone] = []
    for zone in sorted(root.glob("intel-rapl:*")):
        try:
            name = (zone / "name").read_text().strip()
            if not (name.startswith("package") or name == "dram"):
                continue
            max_range = int((zone / "max_energy_range_uj").read_text().strip())
            candidate = RaplZone(name=f"{name}@{zone.name}" if name == "dram" else name,
                                 energy_path=zone / "energy_uj", max_range_uj=max_range)
            candidate.read_uj()
        except (OSError, ValueError) as error:
            log.debug("RAPL zone %s not usable: %s", zone, error)
            continue
        zones.append(candidate)
    return zones


def _rapl_delta(before: int, after: int, max_range: int) -> int:
    # The counter wraps at max_energy_range_uj; one wrap per interval is all a short lap can see.
    return after - before if after >= before else after + max_range - before


class _NvmlSensor:
    """NVIDIA GPUs through pynvml: the total-energy counter where the GPU has one, else sampled power."""

    def __init__(self, nvml: Any, *, clock: Callable[[], float], sample_interval_s: float) -> None:
        self._nvml = nvml
        self._clock = clock
        self._interval = sample_interval_s
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        self._counter: dict[int, bool] = {}
        for index, handle in enumerate(self._handles):
            try:
                nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                self._counter[index] = True
            except nvml.NVMLError:
                self._counter[index] = False  # pre-Volta GPUs: integrate power samples instead
        self._marks: dict[int, float] = {}
        self._last: dict[int, tuple[float, float]] = {}  # index -> (time, watts) of the last power sample
        self._integral: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def count(self) -> int:
        return len(self._handles)

    def _energy_j(self, index: int) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handles[index]) / 1000.0  # mJ

    def poll(self) -> None:
        """Take one power sample of each GPU without an energy counter (trapezoid rule)."""
        with self._lock:
            for index, has_counter in self._counter.items():
                if has_counter:
                    continue
                now, watts = self._clock(), self._nvml.nvmlDeviceGetPowerUsage(self._handles[index]) / 1000.0
                if index in self._last:
                    then, before = self._last[index]
                    self._integral[index] = self._integral.get(index, 0.0) + (now - then) * (watts + before) / 2
                self._last[index] = (now, watts)

    def start(self) -> None:
        self._halt()  # a meter started again without a stop must not leave a second sampler running
        self._marks = {i: self._energy_j(i) for i, c in self._counter.items() if c}
        self._last.clear()
        self._integral.clear()
        self.poll()
        if self._interval > 0 and not all(self._counter.values()):
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="nvml-power", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.poll()
            except Exception:  # a GPU that goes away mid-run must not kill the meter thread silently
                log.exception("NVML power sampling failed")
                return

    def lap(self) -> dict[str, float]:
        """Joules per GPU since start() or the previous lap."""
        self.poll()
        parts: dict[str, float] = {}
        with self._lock:
            for index, has_counter in self._counter.items():
                if has_counter:
                    now = self._energy_j(index)
                    parts[f"gpu{index}"] = now - self._marks[index]
                    self._marks[index] = now
                else:
                    parts[f"gpu{index}"] = self._integral.pop(index, 0.0)
        return parts

    def _halt(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def stop(self) -> dict[str, float]:
        self._halt()
        return self.lap()


def _load_nvml(*, clock: Callable[[], float], sample_interval_s: float) -> _NvmlSensor | None:
    try:
        import pynvml  # optional: only machines with NVIDIA drivers have use for it
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        sensor = _NvmlSensor(pynvml, clock=clock, sample_interval_s=sample_interval_s)
    except Exception as error:  # no driver, no GPU: NVML raises its own error types
        log.debug("NVML not available: %s", error)
        return None
    return sensor if sensor.count else None


class EnergyMeter:
    """Measures energy between start() and stop(), with lap() for per-test figures.

    Sensors: RAPL (CPU package and DRAM) and NVML (NVIDIA GPUs), each where readable. With neither,
    `fallback_watts` (the user's figure for the whole system) times the elapsed time, marked as an estimate;
    with neither and no watts figure, readings are None.
    """

    def __init__(self, *, fallback_watts: float | None = None, powercap_root: Path = POWERCAP_ROOT,
                 use_nvml: bool = True, sample_interval_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._fallback_watts = fallback_watts if fallback_watts and fallback_watts > 0 else None
        self._rapl = rapl_zones(root=powercap_root)
        self._nvml = _load_nvml(clock=clock, sample_interval_s=sample_interval_s) if use_nvml else None
        self._rapl_marks: dict[str, int] = {}
        self._t_mark = 0.0
        self.running = False

    @property
    def sources(self) -> list[str]:
        """The sensors that will be read: "rapl", "nvml", or none."""
        return (["rapl"] if self._rapl else []) + (["nvml"] if self._nvml else [])

    @property
    def available(self) -> bool:
        """Whether readings will be given at all (a sensor, or a watts figure to estimate from)."""
        return bool(self.sources) or self._fallback_watts is not None

    def describe(self) -> str:
        """One line for the user: what will be measured, or why it is an estimate."""
        if self.sources:
            return "measured: " + ", ".join(self.sources)
        if self._fallback_watts:
            return f"estimate: {self._fallback_watts:g} W (no energy sensor readable here)"
        return "not available: no energy sensor readable here and no power figure in the settings"

    def start(self) -> None:
        self._rapl_marks = {z.name: z.read_uj() for z in self._rapl}
        if self._nvml:
            self._nvml.start()
        self._t_mark = self._clock()
        self.running = True

    def lap(self) -> EnergyReading | None:
        """Energy since start() or the previous lap; the meter keeps running."""
        if not self.running:
            raise RuntimeError("EnergyMeter.lap() before start()")
        return self._reading(self._nvml.lap() if self._nvml else {})

    def stop(self) -> EnergyReading | None:
        """Energy since start() or the previous lap; the meter stops."""
        if not self.running:
            raise RuntimeError("EnergyMeter.stop() before start()")
        reading = self._reading(self._nvml.stop() if self._nvml else {})
        self.running = False
        return reading

    def _reading(self, gpu_parts: dict[str, float]) -> EnergyReading | None:
        now = self._clock()
        seconds, self._t_mark = now - self._t_mark, now
        parts: dict[str, float] = {}
        for zone in self._rapl:
            try:
                value = zone.read_uj()
            except (OSError, ValueError):
                log.warning("RAPL zone %s became unreadable; its energy is left out", zone.name)
                continue
            parts[zone.name] = _rapl_delta(self._rapl_marks[zone.name], value, zone.max_range_uj) / 1e6
            self._rapl_marks[zone.name] = value
        parts.update(gpu_parts)
        if self.sources:
            return EnergyReading(joules=sum(parts.values()), source="+".join(self.sources), is_estimate=False,
                                 seconds=seconds, parts=parts)
        if self._fallback_watts is not None:
            return EnergyReading(joules=self._fallback_watts * seconds, is_estimate=True, seconds=seconds,
                                 source=f"estimate ({self._fallback_watts:g} W)")
        return None


class RepetitionEnergy:
    """Energy of a test's timed repetitions only, read from a running EnergyMeter at each rep's start and end.

    A lap taken between a test's first event and its result also spans the model load, the TTFT runs, the
    context creation, the warm-up and the depth prefill; power differs in each, so a time-share of that lap
    is not the repetitions' energy. Here every rep is metered on its own and the gaps are thrown away.
    """

    def __init__(self, meter: EnergyMeter) -> None:
        self.meter = meter
        self._open = False
        self._readings: list[EnergyReading] = []

    def begin(self) -> None:
        """A timed repetition starts now: what the meter counted since its last read is not this test's."""
        if self.meter.running:
            self.meter.lap()
        else:
            self.meter.start()
        self._open = True

    def end(self) -> None:
        """The repetition begun last has ended; its reading is kept for take()."""
        if not self._open or not self.meter.running:
            return
        self._open = False
        reading = self.meter.lap()
        if reading is not None:
            self._readings.append(reading)

    def take(self) -> EnergyReading | None:
        """The sum over the repetitions metered since the last take (None if none was), and start afresh."""
        readings, self._readings, self._open = self._readings, [], False
        if not readings:
            return None
        parts: dict[str, float] = {}
        for reading in readings:
            for name, joules in reading.parts.items():
                parts[name] = parts.get(name, 0.0) + joules
        return EnergyReading(joules=sum(r.joules for r in readings), source=readings[-1].source,
                             is_estimate=any(r.is_estimate for r in readings),
                             seconds=sum(r.seconds for r in readings), parts=parts)
