"""What this machine has for running models: CPU, memory, disk, GPUs, and what the llama.cpp build can use."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.units import fmt_bytes

log = logging.getLogger(__name__)

# /proc/cpuinfo flag -> the name llama.cpp's system info uses; only what changes llama.cpp's kernels.
_X86_FLAGS = {
    "avx": "AVX", "avx2": "AVX2", "f16c": "F16C", "fma": "FMA", "avx_vnni": "AVX_VNNI",
    "avx512f": "AVX512", "avx512bw": "AVX512_BW", "avx512vl": "AVX512_VL", "avx512_vnni": "AVX512_VNNI",
    "avx512_bf16": "AVX512_BF16", "avx512vbmi": "AVX512_VBMI", "avx512_fp16": "AVX512_FP16",
    "amx_tile": "AMX_TILE", "amx_int8": "AMX_INT8", "amx_bf16": "AMX_BF16", "ssse3": "SSSE3", "sse4_2": "SSE4_2",
}
_ARM_FLAGS = {
    "asimd": "NEON", "fphp": "FP16", "asimdhp": "FP16_VA", "asimddp": "DOTPROD", "i8mm": "MATMUL_INT8",
    "sve": "SVE", "sve2": "SVE2", "sme": "SME", "sme2": "SME2", "bf16": "BF16",
}
_MAC_FLAGS = {
    "hw.optional.neon": "NEON", "hw.optional.arm.FEAT_FP16": "FP16", "hw.optional.arm.FEAT_DotProd": "DOTPROD",
    "hw.optional.arm.FEAT_I8MM": "MATMUL_INT8", "hw.optional.arm.FEAT_BF16": "BF16",
    "hw.optional.arm.FEAT_SME": "SME", "hw.optional.arm.FEAT_SME2": "SME2", "hw.optional.avx2_0": "AVX2",
    "hw.optional.avx1_0": "AVX", "hw.optional.fma": "FMA", "hw.optional.avx512f": "AVX512",
}


@dataclass
class CpuInfo:
    model: str = ""
    arch: str = ""
    physical_cores: int = 0
    logical_cores: int = 0
    flags: list[str] = field(default_factory=list)
    caches: dict[str, int] = field(default_factory=dict)  # "L1d", "L2", "L3" -> bytes (per instance)


@dataclass
class GpuInfo:
    index: int
    name: str
    vendor: str  # "NVIDIA", "AMD", "Apple"
    memory_total: int = 0  # bytes
    memory_free: int = 0
    driver: str = ""
    power_limit_w: float = 0.0
    unified_memory: bool = False  # shares system RAM (Apple silicon)
    source: str = ""  # "nvml", "sysfs", "sysctl"


@dataclass
class DiskInfo:
    path: str
    total: int
    free: int


@dataclass
class LlamaBuild:
    """What the installed llama.cpp build reports about itself, asked in a child process."""

    llama_cpp_python_version: str = ""
    commit: str = ""
    ggml_version: str = ""
    backends: list[str] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    supports_gpu_offload: bool = False
    supports_rpc: bool = False  # the RPC backend: rpc-server, bench --rpc
    system_info: str = ""
    error: str = ""

    @property
    def gpu_devices(self) -> list[dict[str, Any]]:
        return [d for d in self.devices if d.get("type") in ("GPU", "IGPU")]


@dataclass
class HardwareInfo:
    os: str
    python: str
    cpu: CpuInfo
    ram_total: int
    ram_available: int
    swap_total: int
    swap_free: int
    disks: list[DiskInfo] = field(default_factory=list)
    gpus: list[GpuInfo] = field(default_factory=list)
    llama: LlamaBuild | None = None
    notes: list[str] = field(default_factory=list)  # parts of the probe that failed, in words

    @property
    def gpu_summary(self) -> str:
        return ", ".join(f"{g.name} ({fmt_bytes(g.memory_total)})" for g in self.gpus) or "CPU only"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _sysctl(name: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _size_text(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)B?\s*", text, re.IGNORECASE)
    if not match:
        return 0
    return int(match.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[match.group(2).upper()]


def probe_cpu(notes: list[str]) -> CpuInfo:
    """CPU model, cores, llama.cpp-relevant instruction sets and cache sizes."""
    import psutil

    cpu = CpuInfo(arch=platform.machine(), logical_cores=psutil.cpu_count() or 0,
                  physical_cores=psutil.cpu_count(logical=False) or 0)
    if sys.platform == "darwin":
        cpu.model = _sysctl("machdep.cpu.brand_string")
        cpu.flags = sorted({label for key, label in _MAC_FLAGS.items() if _sysctl(key) == "1"})
        for label, key in (("L1d", "hw.l1dcachesize"), ("L2", "hw.l2cachesize"), ("L3", "hw.l3cachesize")):
            if _sysctl(key).isdigit() and int(_sysctl(key)):
                cpu.caches[label] = int(_sysctl(key))
    elif sys.platform.startswith("linux"):
        info = _read("/proc/cpuinfo")
        model = re.search(r"^(model name|Hardware|Processor|cpu model)\s*:\s*(.+)$", info, re.MULTILINE)
        cpu.model = model.group(2).strip() if model else ""
        flag_line = re.search(r"^(flags|Features)\s*:\s*(.*)$", info, re.MULTILINE)
        present = set(flag_line.group(2).split()) if flag_line else set()
        table = _ARM_FLAGS if cpu.arch in ("aarch64", "arm64") else _X86_FLAGS
        cpu.flags = sorted({label for flag, label in table.items() if flag in present})
        if cpu.arch in ("aarch64", "arm64") and not cpu.model:
            part = re.search(r"^CPU part\s*:\s*(\S+)", info, re.MULTILINE)
            cpu.model = f"ARM (part {part.group(1)})" if part else "ARM"
        for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
            level, kind = _read(index / "level").strip(), _read(index / "type").strip()
            label = f"L{level}" + ({"Data": "d", "Instruction": "i"}.get(kind, ""))
            size = _size_text(_read(index / "size"))
            if level and size:
                cpu.caches[label] = size
    if not cpu.model:
        cpu.model = platform.processor() or "unknown CPU"
        notes.append("CPU model name not found; using the platform's processor string")
    return cpu


def probe_nvidia(notes: list[str]) -> list[GpuInfo]:
    """NVIDIA GPUs through NVML; no library, no driver or no GPU is an empty list and a note, never an error."""
    try:
        import pynvml
    except ImportError:
        notes.append("nvidia-ml-py is not installed: NVIDIA GPUs not probed")
        return []
    try:
        pynvml.nvmlInit()
    except Exception as error:  # NVMLError_LibraryNotFound / DriverNotLoaded: the usual answer on a CPU-only box
        notes.append(f"NVML not available ({error}): no NVIDIA GPU found")
        return []
    gpus: list[GpuInfo] = []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        for index in range(pynvml.nvmlDeviceGetCount()):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                name = pynvml.nvmlDeviceGetName(handle)
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                gpu = GpuInfo(index=index, name=name.decode() if isinstance(name, bytes) else str(name),
                              vendor="NVIDIA", memory_total=int(memory.total), memory_free=int(memory.free),
                              driver=driver, source="nvml")
                try:
                    gpu.power_limit_w = pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0
                except Exception as error:  # not every board exposes a power limit
                    notes.append(f"GPU {index}: power limit unknown ({error})")
                gpus.append(gpu)
            except Exception as error:
                notes.append(f"GPU {index}: NVML query failed ({error})")
    except Exception as error:
        notes.append(f"NVML query failed ({error})")
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception as error:
            log.debug("nvmlShutdown: %s", error)
    return gpus


def probe_amd(notes: list[str], *, drm_root: Path = Path("/sys/class/drm")) -> list[GpuInfo]:
    """AMD GPUs through the amdgpu driver's sysfs files (Linux)."""
    gpus: list[GpuInfo] = []
    for card in sorted(drm_root.glob("card[0-9]*")):
        device = card / "device"
        if "-" in card.name or _read(device / "vendor").strip() != "0x1002":
            continue
        total = _read(device / "mem_info_vram_total").strip()
        used = _read(device / "mem_info_vram_used").strip()
        if not total.isdigit():
            notes.append(f"{card.name}: AMD GPU without VRAM figures in sysfs")
            continue
        name = _read(device / "product_name").strip() or f"AMD GPU {_read(device / 'device').strip()}"
        gpus.append(GpuInfo(index=len(gpus), name=name, vendor="AMD", memory_total=int(total),
                            memory_free=int(total) - int(used) if used.isdigit() else 0, source="sysfs"))
    return gpus


def probe_apple(ram_total: int) -> list[GpuInfo]:
    """Apple silicon: one GPU sharing the system memory (Metal can use most, not all, of it)."""
    if sys.platform != "darwin" or platform.machine() != "arm64":
        return []
    name = _sysctl("machdep.cpu.brand_string") or "Apple silicon"
    return [GpuInfo(index=0, name=f"{name} GPU", vendor="Apple", memory_total=ram_total, unified_memory=True,
                    source="sysctl")]


def _disk(path: Path) -> DiskInfo | None:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folder may not exist yet; its volume does
    try:
        usage = shutil.disk_usage(existing)
    except OSError:
        return None
    return DiskInfo(path=str(path), total=usage.total, free=usage.free)


def _model_folders() -> list[Path]:
    from models.paths import models_dir

    folders = [models_dir()]
    try:
        from huggingface_hub import constants

        folders.append(Path(constants.HF_HUB_CACHE))
    except ImportError:
        log.debug("huggingface_hub not importable; HF cache disk not probed")
    return folders


@functools.lru_cache(maxsize=1)
def llama_build(timeout: float = 120.0) -> LlamaBuild:
    """The llama.cpp build's backends and devices, asked once per process in a child (llama.cpp never loads here)."""
    from models.child import PROJECT_ROOT, child_env

    try:
        proc = subprocess.run([sys.executable, "-m", "models.machine.probe_worker"], capture_output=True, text=True,
                              timeout=timeout, env=child_env(), cwd=PROJECT_ROOT)
    except (OSError, subprocess.SubprocessError) as error:
        return LlamaBuild(error=f"llama.cpp probe could not run: {error}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return LlamaBuild(error=f"llama.cpp probe failed (exit {proc.returncode}): {' | '.join(tail)}")
    data = json.loads(lines[-1])
    return LlamaBuild(
        llama_cpp_python_version=data.get("llama_cpp_python_version", ""), commit=data.get("ggml_commit", ""),
        ggml_version=data.get("ggml_version", ""), backends=list(data.get("backends", [])),
        devices=list(data.get("devices", [])), supports_gpu_offload=bool(data.get("supports_gpu_offload")),
        supports_rpc=bool(data.get("supports_rpc")) or "RPC" in data.get("backends", []),
        system_info=data.get("system_info", ""),
        error=data.get("error", "") or "; ".join(data.get("notes", [])))


def probe_hardware(*, with_llama: bool = True) -> HardwareInfo:
    """Everything above; a part that fails becomes a note in `notes`, never an exception."""
    import psutil

    notes: list[str] = []
    try:
        cpu = probe_cpu(notes)
    except Exception as error:  # a strange /proc or sysctl must not take the whole answer down
        notes.append(f"CPU probe failed: {error}")
        cpu = CpuInfo(model="unknown CPU", arch=platform.machine())
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    info = HardwareInfo(os=platform.platform(), python=platform.python_version(), cpu=cpu,
                        ram_total=int(memory.total), ram_available=int(memory.available),
                        swap_total=int(swap.total), swap_free=int(swap.free), notes=notes)
    for folder in _model_folders():
        disk = _disk(folder)
        if disk is None:
            notes.append(f"free disk unknown for {folder}")
        else:
            info.disks.append(disk)
    for probe in (probe_nvidia, probe_amd):
        try:
            info.gpus += probe(notes)
        except Exception as error:
            notes.append(f"{probe.__name__} failed: {error}")
    info.gpus += probe_apple(info.ram_total)
    if with_llama:
        info.llama = llama_build()
        if info.llama.error:
            notes.append(info.llama.error)
    return info


def machine_fingerprint() -> dict[str, Any]:
    """The build and machine identity stored with every result; machine_id hashes the hardware only."""
    info = probe_hardware()
    build = info.llama or LlamaBuild()
    system = f"{platform.system()} {platform.release()} {platform.machine()}"
    gpus = [{"name": g.name, "vram": g.memory_total} for g in info.gpus]
    # RAM is rounded to 256 MiB because the kernel's reserved memory moves a little between boots.
    identity = {"cpu": info.cpu.model, "cores": [info.cpu.physical_cores, info.cpu.logical_cores],
                "ram": round(info.ram_total / 2**28), "gpus": [[g["name"], g["vram"]] for g in gpus],
                "arch": platform.machine(), "node": platform.node()}
    machine_id = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "machine_id": machine_id, "os": system, "python": info.python, "cpu": info.cpu.model,
        "cpu_cores": info.cpu.physical_cores, "ram_total": info.ram_total, "gpus": gpus,
        "gpu_driver": next((g.driver for g in info.gpus if g.driver), ""), "backends": build.backends,
        "llama_cpp_python_version": build.llama_cpp_python_version, "llama_cpp_commit": build.commit,
        "system_info": build.system_info,
    }
