"""This machine's memory bandwidth (a multi-threaded read/copy test on the CPU, NVIDIA GPUs from NVML) and its
compute peak (models.machine.compute), stored together per machine: the limits a benchmark is measured against."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import platform
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.machine.compute import CpuCompute, fmt_flops, gpu_fp16_flops, measure_compute
from models.machine.quiet import QUIET_CORES, QuietWatch
from models.units import fmt_bytes

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_BUFFER, MAX_BUFFER = 256 * MIB, 1024 * MIB  # the automatic size: 8 x the L3 cache between these
MIN_SECONDS = 1.5  # passes go on at least this long: one burst of another program cannot spoil all of them
MAX_SECONDS = 10.0
UNSTEADY = 0.05  # the best passes of the two halves of the window differ more than this: the machine changed
CACHE_FILE = "bandwidth.json"
CACHE_DAYS = 30  # a machine's RAM does not change often; the user can measure again at any time


@dataclass
class CpuBandwidth:
    """The best of many barrier-synchronised passes over a buffer much larger than the caches (STREAM's rule)."""

    read: float  # bytes/s, every thread summing its own block: what a generated token does to the weights
    copy: float  # bytes/s, counted as STREAM counts it (bytes read + bytes written)
    threads: int
    buffer_bytes: int
    repeats: int  # passes of each kind timed (at least the number asked for, more while the window lasts)
    read_samples: list[float] = field(default_factory=list)  # bytes/s per pass
    copy_samples: list[float] = field(default_factory=list)
    seconds: float = 0.0  # the whole measurement
    measured_at: str = ""
    # The best read pass of the window's first half against its second half, (high - low) / high: above UNSTEADY
    # the bandwidth on offer changed during the test (another program's memory traffic, a virtual machine's
    # neighbours), so the figure may not repeat. -1: a measurement stored before this was recorded.
    halves_gap: float = -1.0
    # The least CPU that other programs used (in cores, steal included) over a stretch of the window: below
    # QUIET_CORES some passes ran undisturbed; above, the window ran to max_seconds without. -1: not read.
    others_cores: float = -1.0

    @property
    def read_spread(self) -> float:
        """(best - median) / best of the read passes: how far a typical pass fell short of the best."""
        if not self.read_samples or self.read <= 0:
            return 0.0
        return (self.read - statistics.median(self.read_samples)) / self.read

    @property
    def steady(self) -> bool:
        return self.halves_gap < UNSTEADY


@dataclass
class GpuBandwidth:
    """A GPU's peak memory bandwidth from its memory clock and bus width (double data rate), as NVML reports them."""

    index: int
    name: str
    peak: float  # bytes/s
    memory_clock_mhz: int
    bus_width_bits: int
    source: str = "nvml"
    flops: float = 0.0  # dense FP16 tensor peak from the data sheet for its name (models.machine.compute); 0: not known


@dataclass
class MachineBandwidth:
    """What a token can read per second on each device; an empty part is 'not measured', never an error."""

    cpu: CpuBandwidth | None = None
    gpus: list[GpuBandwidth] = field(default_factory=list)
    machine: str = ""  # the key of the machine it was measured on (bandwidth_key)
    notes: list[str] = field(default_factory=list)
    compute: CpuCompute | None = None  # the CPU's float32 GEMM peak; None: not measured

    @property
    def cpu_flops(self) -> float:
        return self.compute.flops if self.compute else 0.0

    @property
    def gpu_flops(self) -> float:
        """The first GPU's dense FP16 peak (0.0: not known)."""
        return self.gpus[0].flops if self.gpus else 0.0

    @property
    def cpu_read(self) -> float:
        return self.cpu.read if self.cpu else 0.0

    @property
    def gpu_peak(self) -> float:
        """The first GPU's (llama.cpp's main device): the one layers are offloaded to."""
        return self.gpus[0].peak if self.gpus else 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MachineBandwidth:
        if not isinstance(data, dict):
            raise TypeError(f"expected an object, found {type(data).__name__}")
        cpu = data.get("cpu")
        compute = data.get("compute")
        return cls(cpu=CpuBandwidth(**cpu) if isinstance(cpu, dict) else None,
                   gpus=[GpuBandwidth(**g) for g in data.get("gpus") or [] if isinstance(g, dict)],
                   machine=str(data.get("machine", "")), notes=[str(n) for n in data.get("notes") or []],
                   compute=CpuCompute(**compute) if isinstance(compute, dict) else None)

    def summary(self) -> str:
        parts = []
        if self.cpu:
            parts.append(f"CPU {fmt_rate_bytes(self.cpu.read)} read, {fmt_rate_bytes(self.cpu.copy)} copy "
                         f"({self.cpu.threads} threads)")
        parts += [f"GPU {g.index} {fmt_rate_bytes(g.peak)} peak" for g in self.gpus]
        return "; ".join(parts) or "not measured"

    def compute_summary(self) -> str:
        """"CPU 250 GFLOPS f32 GEMM (2 threads); GPU 0 989 TFLOPS FP16 (data sheet)", parts not known said so."""
        parts = [f"CPU {fmt_flops(self.compute.flops)} f32 GEMM ({self.compute.threads or '?'} threads)"
                 if self.compute else "CPU not measured"]
        parts += [f"GPU {g.index} {fmt_flops(g.flops)} FP16 (data sheet)" if g.flops else
                  f"GPU {g.index} FP16 peak not known" for g in self.gpus]
        return "; ".join(parts)


def fmt_rate_bytes(bytes_per_s: float) -> str:
    """A memory bandwidth in decimal GB/s, the unit memory is sold in."""
    return f"{bytes_per_s / 1e9:.1f} GB/s" if bytes_per_s > 0 else "not measured"


def _default_threads() -> int:
    import psutil

    # llama.cpp's default thread count is the physical cores; the same number reads the weights.
    return max(psutil.cpu_count(logical=False) or psutil.cpu_count() or 1, 1)


def default_buffer(l3_bytes: int = 0) -> int:
    """8 x the last-level cache, between 256 MiB and 1 GiB: RAM is read, not the cache, yet a pass stays short
    (a few ms), so that many passes fit in the window and some of them run undisturbed."""
    return min(max(8 * l3_bytes, MIN_BUFFER), MAX_BUFFER) // MIB * MIB


def _l3_bytes() -> int:
    from models.machine.hardware import probe_cpu

    try:
        return int(probe_cpu([]).caches.get("L3", 0))
    except Exception as error:  # noqa: BLE001 - an unreadable cache size only costs the automatic buffer size
        log.debug("L3 size not read: %s", error)
        return 0


def measure_cpu_bandwidth(*, threads: int | None = None, buffer_bytes: int | None = None, repeats: int = 10,
                          min_seconds: float = MIN_SECONDS, max_seconds: float = MAX_SECONDS) -> CpuBandwidth:
    """Read and copy bandwidth of RAM with `threads` threads, each over its own block of `buffer_bytes / threads`.

    Read and copy passes alternate until `repeats` of each are timed, `min_seconds` have passed and other
    programs left the CPU alone for a stretch of a quarter second (or `max_seconds`: a program that competes
    for the cores all along costs the threads their passes); the best pass of each kind is the figure (STREAM's rule: interference only ever slows a
    pass down, so the best is the one nothing disturbed). Before that, warm-up passes until the page faults of
    the first touch are over and the clock has ramped up. A pass is timed from the first thread's start to the
    last thread's end, so the wake-up of the Python threads is not counted.

    numpy releases the GIL inside a reduction or a copy of a large array, so the threads run in parallel.
    Integer sums are used for reading: float sums are pairwise and compute-bound on one core, int64 adds are not.
    """
    import numpy as np

    threads = _default_threads() if threads is None else threads
    buffer_bytes = default_buffer(_l3_bytes()) if buffer_bytes is None else buffer_bytes
    if threads < 1 or repeats < 1:
        raise ValueError(f"threads and repeats must be at least 1 (got {threads}, {repeats}).")
    if buffer_bytes < threads * MIB:
        raise ValueError(f"A {fmt_bytes(buffer_bytes)} buffer is too small for {threads} threads (1 MiB each).")
    if not 0 <= min_seconds <= max_seconds:
        raise ValueError(f"min_seconds must be between 0 and max_seconds (got {min_seconds}, {max_seconds}).")
    words = buffer_bytes // threads // 8
    blocks: list[Any] = [None] * threads
    copies: list[Any] = [None] * threads
    began = [0.0] * threads
    ended = [0.0] * threads
    start = time.perf_counter()
    barrier = threading.Barrier(threads + 1)
    mode = ["read"]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            # Allocated and first touched by the thread that reads it, so a NUMA system places it near; the
            # copy target too (np.zeros would leave its pages to be faulted in during the first timed copy).
            blocks[i] = np.ones(words, dtype=np.int64)
            copies[i] = np.ones(words, dtype=np.int64)
        except BaseException as error:  # noqa: BLE001 - reported by the caller after the barrier
            errors.append(error)
        barrier.wait()
        while True:
            barrier.wait()
            if mode[0] == "stop":
                return
            if not errors:
                began[i] = time.perf_counter()
                if mode[0] == "read":
                    np.add.reduce(blocks[i])
                else:
                    np.copyto(copies[i], blocks[i])
                ended[i] = time.perf_counter()
            barrier.wait()

    pool = [threading.Thread(target=work, args=(i,), daemon=True, name=f"bandwidth-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()  # every block allocated

    def timed(kind: str) -> float:
        mode[0] = kind
        barrier.wait()
        barrier.wait()
        return max(max(ended) - min(began), 1e-9)

    total = words * 8 * threads
    read_samples: list[float] = []
    copy_samples: list[float] = []
    try:
        if errors:
            raise MemoryError(f"Could not allocate {fmt_bytes(2 * total)} for the bandwidth test: {errors[0]}")
        warm_until = time.perf_counter() + min(0.2, min_seconds / 4)
        for _ in range(100):  # at least two of each: the clock ramps up on the first, TLBs settle on the second
            timed("read")
            timed("copy")
            if _ >= 1 and time.perf_counter() >= warm_until:
                break
        window = time.perf_counter()
        watch = QuietWatch(min_seconds)
        while True:
            read_samples.append(total / timed("read"))
            copy_samples.append(2 * total / timed("copy"))
            quiet = watch.tick()
            elapsed = time.perf_counter() - window
            if (len(read_samples) >= repeats and elapsed >= min_seconds and quiet) or elapsed >= max_seconds:
                break
    finally:
        mode[0] = "stop"
        barrier.wait()
        for thread in pool:
            thread.join()
    return CpuBandwidth(read=max(read_samples), copy=max(copy_samples), threads=threads, buffer_bytes=total,
                        repeats=len(read_samples), read_samples=read_samples, copy_samples=copy_samples,
                        seconds=time.perf_counter() - start, measured_at=_now(), halves_gap=_halves_gap(read_samples),
                        others_cores=watch.least_others)


def _halves_gap(samples: list[float]) -> float:
    half = len(samples) // 2
    if half < 1:
        return 0.0
    first, second = max(samples[:half]), max(samples[half:])
    return abs(first - second) / max(first, second)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _nvml_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvidia_bandwidth(notes: list[str], *, nvml: Any = None) -> list[GpuBandwidth]:
    """Peak bandwidth per NVIDIA GPU: max memory clock x 2 (double data rate) x bus width.

    Checked against the data sheets: an H100 SXM reports 2619 MHz x 5120 bits = 3.35 TB/s, an RTX 4090
    10501 MHz x 384 bits = 1.01 TB/s. No NVML, no driver or no GPU is an empty list and a note.
    """
    if nvml is None:
        try:
            import pynvml

            nvml = pynvml
        except ImportError:
            notes.append("nvidia-ml-py is not installed: GPU bandwidth not read")
            return []
    try:
        nvml.nvmlInit()
    except Exception as error:  # NVMLError_LibraryNotFound / DriverNotLoaded: the usual answer without a GPU
        log.debug("NVML not available: %s", error)
        return []
    out: list[GpuBandwidth] = []
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                name = _nvml_text(nvml.nvmlDeviceGetName(handle))
                clock = int(nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_MEM))
                width = int(nvml.nvmlDeviceGetMemoryBusWidth(handle))
            except Exception as error:  # an older driver lacks the bus width query
                notes.append(f"GPU {index}: memory clock or bus width not readable ({error})")
                continue
            if clock <= 0 or width <= 0:
                notes.append(f"GPU {index}: NVML reports memory clock {clock} MHz, bus {width} bits: not measured")
                continue
            out.append(GpuBandwidth(index=index, name=name, peak=clock * 1e6 * 2 * width / 8,
                                    memory_clock_mhz=clock, bus_width_bits=width, flops=gpu_fp16_flops(name)))
    except Exception as error:
        notes.append(f"NVML query failed ({error})")
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception as error:
            log.debug("nvmlShutdown: %s", error)
    return out


def bandwidth_key() -> str:
    """What must stay the same for a stored measurement to hold: CPU, core count, RAM size (to 1 GiB), host."""
    import psutil

    from models.machine.hardware import probe_cpu

    cpu = probe_cpu([])
    ram = round(psutil.virtual_memory().total / 2**30)
    return f"{cpu.model}|{cpu.physical_cores}/{cpu.logical_cores}|{ram}GiB|{platform.node()}"


def cache_path() -> Path:
    from models.paths import data_dir

    return data_dir() / CACHE_FILE


def load_bandwidth(*, key: str | None = None, max_age_days: float = CACHE_DAYS) -> MachineBandwidth | None:
    """The stored measurement of this machine, if there is a recent one; anything unreadable is no measurement."""
    path = cache_path()
    try:
        data = json.loads(path.read_text())
        stored = MachineBandwidth.from_json(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, AttributeError) as error:
        log.warning("Ignoring the stored bandwidth in %s: %s", path, error)
        return None
    if stored.machine != (key or bandwidth_key()) or stored.cpu is None:
        return None
    try:
        when = _dt.datetime.fromisoformat(stored.cpu.measured_at)
    except ValueError:
        return None
    if (_dt.datetime.now(_dt.timezone.utc) - when).total_seconds() > max_age_days * 86400:
        return None
    return stored


def save_bandwidth(bandwidth: MachineBandwidth) -> Path:
    from models.files import atomic_write_text

    return atomic_write_text(cache_path(), json.dumps(bandwidth.to_json(), indent=2))


def _measure_compute(result: MachineBandwidth) -> None:
    try:
        result.compute = measure_compute()
    except (MemoryError, ValueError, ArithmeticError) as error:
        result.notes.append(f"CPU compute not measured: {error}")
        return
    if result.compute.others_cores >= QUIET_CORES:
        result.notes.append(f"other programs used {result.compute.others_cores:.1f} cores all through the compute "
                            "test: the figure may be low; measure again when the machine is quiet")


def _save(result: MachineBandwidth) -> None:
    try:
        save_bandwidth(MachineBandwidth(cpu=result.cpu, machine=result.machine, compute=result.compute))
    except OSError as error:  # a read-only home still gets the figure, just not kept
        result.notes.append(f"bandwidth not saved: {error}")


def machine_bandwidth(*, refresh: bool = False, measure: bool = True, threads: int | None = None,
                      buffer_bytes: int | None = None, repeats: int = 10,
                      min_seconds: float = MIN_SECONDS, max_seconds: float = MAX_SECONDS) -> MachineBandwidth:
    """This machine's bandwidth: the stored measurement, else (`measure`) a new one that is then stored.

    GPUs are read from NVML every time (cheap, and a driver update can change the clocks).
    """
    key = bandwidth_key()
    result = None if refresh else load_bandwidth(key=key)
    if result is None:
        result = MachineBandwidth(machine=key)
        if measure:
            try:
                result.cpu = measure_cpu_bandwidth(threads=threads, buffer_bytes=buffer_bytes, repeats=repeats,
                                                   min_seconds=min_seconds, max_seconds=max_seconds)
            except (MemoryError, ValueError) as error:
                result.notes.append(f"CPU bandwidth not measured: {error}")
            if result.cpu is not None and result.cpu.others_cores >= QUIET_CORES:
                result.notes.append(f"other programs used {result.cpu.others_cores:.1f} cores all through the CPU "
                                    "bandwidth test: the figure may be low; measure again when the machine is quiet")
            if result.cpu is not None and not result.cpu.steady:
                result.notes.append(f"the CPU bandwidth changed by {result.cpu.halves_gap:.0%} during the test "
                                    "(other programs or virtual machines using the memory): measure again when "
                                    "the machine is quiet")
            _measure_compute(result)
            if result.cpu is not None:
                _save(result)
    elif measure and result.compute is None:  # stored before the compute peak was measured
        _measure_compute(result)
        if result.compute is not None:
            _save(result)
    result.gpus = nvidia_bandwidth(result.notes)
    result.notes += [f"GPU {g.index} ({g.name}): FP16 compute peak not known" for g in result.gpus if not g.flops]
    return result
