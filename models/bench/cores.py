"""llama.cpp's default thread count (common_cpu_get_num_math): physical cores, performance cores only on hybrid CPUs."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

_SYSFS_CPU = Path("/sys/devices/system/cpu")
_SYSFS_P_CORES = Path("/sys/devices/cpu_core/cpus")  # the performance cores' PMU on hybrid Intel CPUs (Linux)


def _parse_cpu_list(text: str) -> list[int]:
    """A kernel CPU list ("0-7,16,18-19") as CPU numbers."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus += range(int(first), int(last or first) + 1)
    return cpus


def _siblings(cpu_root: Path, cpus: list[int] | None = None) -> int:
    """How many distinct thread_siblings sets (physical cores) the CPUs have; llama.cpp reads cpu0, cpu1, ... until one
    is missing."""
    seen: set[str] = set()
    numbers = cpus if cpus is not None else range(1 << 16)
    for cpu in numbers:
        try:
            seen.add((cpu_root / f"cpu{cpu}" / "topology" / "thread_siblings").read_text().strip())
        except OSError:
            if cpus is None:
                break
    return len(seen)


def physical_cores(*, cpu_root: Path = _SYSFS_CPU) -> int:
    """common_cpu_get_num_physical_cores: sysfs on Linux, the performance level on macOS, else psutil's count."""
    if sys.platform.startswith("linux"):
        found = _siblings(cpu_root)
        if found:
            return found
    elif sys.platform == "darwin":
        for key in ("hw.perflevel0.physicalcpu", "hw.physicalcpu"):  # perflevel0: Apple silicon's P cores
            try:
                out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5)
                if out.returncode == 0 and out.stdout.strip().isdigit():
                    return int(out.stdout.strip())
            except (OSError, subprocess.SubprocessError):
                break
    else:
        import psutil

        found = psutil.cpu_count(logical=False) or 0
        if found:
            return int(found)
    logical = os.cpu_count() or 0
    return logical if 0 < logical <= 4 else (logical // 2 if logical else 4)


def _is_hybrid_intel(cpuinfo: Path) -> bool:
    """cpuid leaf 7's hybrid bit, as Linux shows it in /proc/cpuinfo's flags ("hybrid_cpu")."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return "hybrid_cpu" in line.split(":", 1)[-1].split()
    return False


def cpu_get_num_math(*, cpu_root: Path = _SYSFS_CPU, cpuinfo: Path = Path("/proc/cpuinfo"),
                     p_cores: Path = _SYSFS_P_CORES) -> int:
    """The threads llama-bench uses by default: on a hybrid Intel CPU under Linux, the performance cores (one thread
    each; efficiency cores "harm lockstep threading"), elsewhere the physical cores (on Apple silicon the
    performance cores already)."""
    if sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64") and _is_hybrid_intel(cpuinfo):
        try:
            performance = _parse_cpu_list(p_cores.read_text())
        except (OSError, ValueError):
            performance = []
        # llama.cpp pins itself to each CPU and skips the Atom ones; the kernel lists the Core ones for us.
        found = _siblings(cpu_root, performance) if performance else 0
        if found:
            return found
    return max(1, physical_cores(cpu_root=cpu_root))
