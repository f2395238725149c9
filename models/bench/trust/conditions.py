"""What the machine was doing while a test ran, sampled by the runner (the worker stays lean): CPU frequency and
temperature, CPU time used by other processes, swapping, the worker's major page faults, battery, NVIDIA clocks,
temperature and throttle reasons. A sensor that is missing or unreadable leaves its field out ("not measured")."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

INTERVAL_S = 0.5  # light enough to leave the timed repetitions alone (one psutil read per half second)
# NVML throttle reasons that mean the GPU was held back (idle and application-clock settings are not).
_THROTTLE = {0x4: "sw power cap", 0x8: "hw slowdown", 0x20: "sw thermal", 0x40: "hw thermal",
             0x80: "hw power brake"}


def _major_faults(pid: int) -> int | None:
    """The process's major page faults so far (/proc/<pid>/stat field 12), None where unreadable (not Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[9])
    except (OSError, IndexError, ValueError):
        return None


class _Nvml:
    """NVML for GPU 0, opened once per watch; absent or failing NVML is simply no GPU figures."""

    def __init__(self) -> None:
        self.nvml: Any = None
        self.handle: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            if pynvml.nvmlDeviceGetCount() > 0:
                self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
            else:
                pynvml.nvmlShutdown()
        except Exception as error:  # no library, no driver, no GPU: the usual answer on a CPU machine
            log.debug("NVML not available for run conditions: %s", error)

    def sample(self) -> dict[str, float]:
        if self.nvml is None:
            return {}
        out: dict[str, float] = {}
        n = self.nvml
        for key, call in (("gpu_sm_mhz", lambda: n.nvmlDeviceGetClockInfo(self.handle, n.NVML_CLOCK_SM)),
                          ("gpu_temp_c", lambda: n.nvmlDeviceGetTemperature(self.handle, n.NVML_TEMPERATURE_GPU)),
                          ("gpu_throttle", lambda: n.nvmlDeviceGetCurrentClocksThrottleReasons(self.handle))):
            try:
                out[key] = float(call())
            except Exception as error:  # one unsupported query must not cost the others
                log.debug("NVML %s: %s", key, error)
        return out

    def close(self) -> None:
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except Exception as error:
                log.debug("nvmlShutdown: %s", error)


class ConditionWatch:
    """Samples in a background thread; `begin(test)` opens a test's window, `finish(test)` summarizes it."""

    def __init__(self, pid: int, *, interval_s: float = INTERVAL_S) -> None:
        import psutil

        self.pid, self.interval_s = pid, interval_s
        self._psutil = psutil
        try:
            self._worker: Any = psutil.Process(pid)
        except psutil.Error:
            self._worker = None
        self._nvml = _Nvml()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._test = ""
        self._start: dict[str, Any] = {}
        self._samples: list[dict[str, float]] = []
        self._thread = threading.Thread(target=self._loop, name="run-conditions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self._nvml.close()

    def _counters(self) -> dict[str, Any]:
        p = self._psutil
        out: dict[str, Any] = {"t": time.monotonic()}
        try:
            cpu = p.cpu_times()
            out["busy_s"] = sum(cpu) - cpu.idle - getattr(cpu, "iowait", 0.0)
        except (p.Error, OSError):
            pass
        try:
            if self._worker is not None:
                own = self._worker.cpu_times()
                out["worker_s"] = own.user + own.system
        except (p.Error, OSError):
            pass
        try:
            swap = p.swap_memory()
            out["swap_in"], out["swap_out"] = float(swap.sin), float(swap.sout)
        except (p.Error, OSError, RuntimeError):
            pass
        faults = _major_faults(self.pid)
        if faults is not None:
            out["major_faults"] = faults
        return out

    def _sample(self) -> dict[str, float]:
        p = self._psutil
        out: dict[str, float] = {}
        try:
            freq = p.cpu_freq()
            if freq is not None and freq.current > 0:
                out["cpu_mhz"] = float(freq.current)
        except (p.Error, OSError, NotImplementedError, AttributeError):
            pass
        try:
            temps = p.sensors_temperatures() if hasattr(p, "sensors_temperatures") else {}
            values = [t.current for entries in temps.values() for t in entries if t.current]
            if values:
                out["cpu_temp_c"] = float(max(values))
        except (p.Error, OSError, AttributeError):
            pass
        try:
            battery = p.sensors_battery() if hasattr(p, "sensors_battery") else None
            if battery is not None:
                out["on_battery"] = 0.0 if battery.power_plugged else 1.0
        except (p.Error, OSError, AttributeError):
            pass
        out.update(self._nvml.sample())
        return out

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            sample = self._sample()
            with self._lock:
                if self._test:
                    self._samples.append(sample)

    def begin(self, test: str) -> None:
        """A new test starts (its warm-up included: conditions during the warm-up shape the timed runs)."""
        counters, sample = self._counters(), self._sample()
        with self._lock:
            self._test, self._start, self._samples = test, counters, [sample]

    @property
    def current(self) -> str:
        return self._test

    def finish(self, test: str) -> dict[str, Any]:
        """The summary of `test`'s window ({} when it was never begun)."""
        with self._lock:
            if self._test != test or not self._start:
                return {}
            start, samples = self._start, list(self._samples)
            self._test, self._start = "", {}
        end = self._counters()
        samples.append(self._sample())
        out: dict[str, Any] = {"seconds": round(end["t"] - start["t"], 3)}
        if "busy_s" in start and "busy_s" in end:
            others = (end["busy_s"] - start["busy_s"]) - (end.get("worker_s", 0.0) - start.get("worker_s", 0.0))
            out["others_cpu_s"] = round(max(others, 0.0), 3)
        for key in ("swap_in", "swap_out", "major_faults"):
            if key in start and key in end:
                out[key] = end[key] - start[key]
        for key, pick in (("cpu_mhz", min), ("cpu_temp_c", max), ("on_battery", max), ("gpu_sm_mhz", min),
                          ("gpu_temp_c", max)):
            values = [s[key] for s in samples if key in s]
            if values:
                out[key] = round(pick(values), 1)
        reasons = 0
        for s in samples:
            reasons |= int(s.get("gpu_throttle", 0))
        if any("gpu_throttle" in s for s in samples):
            out["gpu_throttle"] = ", ".join(name for bit, name in _THROTTLE.items() if reasons & bit)
        return out
