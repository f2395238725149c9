"""This machine's compute peak: a float32 GEMM on the CPU (best of N), NVIDIA GPUs from a data-sheet table by name.

Why a float32 GEMM stands for llama.cpp's prompt-processing ceiling on the CPU: a prompt is processed in batches,
so llama.cpp multiplies matrices (its tiled sgemm for f32/f16/bf16/q8_0/q4_0, or a quantized x q8 dot product
per block for the k-quants), and what bounds that is the FMA / dot-product units, which a BLAS GEMM keeps busy
as well as anything can. A quantized kernel also dequantizes or requantizes, so it usually reaches a fraction
of the f32 GEMM rate; with int8 dot-product instructions (AVX-VNNI, AVX512-VNNI, NEON dotprod, AMX) it can
exceed it (up to 2-4x per instruction). "pp at N% of the compute limit" is therefore a yardstick of how well
the arithmetic units are used, not a bound that can never be passed. Measured on a 2-core AVX-512/VNNI EPYC
(benchmarks/compute_limit_check.py, pp512 on 4 layers of width 2048): f32 62%, f16 94%, q4_0 131% of the
455 GFLOPS f32 GEMM; the 135M-parameter starter model (Q4_1) 24%, its small matrices leave the units idle.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.machine.quiet import QuietWatch

log = logging.getLogger(__name__)

# Variables that hold OpenBLAS to older kernels than the CPU has (a container's OPENBLAS_CORETYPE=Haswell on an
# AVX-512 machine halves its GEMM): the hardware's peak is measured without them, in a child process.
_KERNEL_PINS = ("OPENBLAS_CORETYPE",)
DEFAULT_N = 2048  # 17 GFLOP a product: milliseconds on a desktop, long enough to time, far beyond any L2
MIN_SECONDS = 0.5

# Dense (no sparsity) FP16 tensor-core peak, FLOP/s, from NVIDIA's data sheets and architecture whitepapers.
# llama.cpp's cuBLAS path for batched prompts multiplies in FP16 with FP16 accumulation where it can, so for
# GeForce cards the FP16-accumulate figure (twice the FP32-accumulate one) is the one given. Matched on the
# name NVML reports, most specific first; any other GPU is "not known" (never guessed).
GPU_FP16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200 NVL", 835e12), ("H200", 989e12),
    ("H100 NVL", 835e12), ("H100 PCIe", 756e12), ("H100", 989e12),  # "H100 80GB HBM3" is the SXM part
    ("A100", 312e12),
    ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12),
    ("V100-SXM2", 125e12), ("V100-PCIE", 112e12),
    ("T4", 65e12),
    ("RTX 4090", 330e12), ("RTX 3090 Ti", 160e12), ("RTX 3090", 142e12),
)


@dataclass
class CpuCompute:
    """The best of several float32 matrix products on every core (numpy's BLAS), FLOP/s."""

    flops: float
    threads: int  # the BLAS's threads (0: not known)
    n: int  # the matrices are n x n
    repeats: int
    samples: list[float] = field(default_factory=list)  # FLOP/s per product
    seconds: float = 0.0
    measured_at: str = ""
    blas: str = ""  # which BLAS numpy used
    others_cores: float = -1.0  # the least CPU other programs used over a stretch (QuietWatch); -1: not read

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def fmt_flops(flops: float) -> str:
    """"412 GFLOPS" / "989 TFLOPS", or "not measured" for 0."""
    if flops <= 0:
        return "not measured"
    if flops >= 1e12:
        return f"{flops / 1e12:.0f} TFLOPS" if flops >= 1e14 else f"{flops / 1e12:.1f} TFLOPS"
    return f"{flops / 1e9:.0f} GFLOPS"


def gpu_fp16_flops(name: str) -> float:
    """The dense FP16 tensor peak of an NVIDIA GPU by its NVML name; 0.0 where not known."""
    for key, flops in GPU_FP16_FLOPS:
        if key.lower() in name.lower():
            return flops
    return 0.0


def _blas_info() -> tuple[str, int]:
    """(BLAS name, its thread count) as numpy's BLAS reports them, where it does (OpenBLAS: scipy-openblas)."""
    import ctypes

    import numpy as np

    try:
        config = np.show_config(mode="dicts")  # type: ignore[call-arg]
        blas = config.get("Build Dependencies", {}).get("blas", {})
        name = f"{blas.get('name', '')} {blas.get('version', '')}".strip()
    except Exception as error:  # noqa: BLE001 - older numpy: the name is only informative
        log.debug("numpy BLAS config not read: %s", error)
        name = ""
    threads = 0
    try:
        import importlib

        # numpy's own extension links its BLAS: the thread count is asked of the library numpy really uses.
        lib = ctypes.CDLL(str(importlib.import_module("numpy._core._multiarray_umath").__file__))
        for symbol in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                       "openblas_get_num_threads"):
            getter = getattr(lib, symbol, None)
            if getter is not None:
                threads = int(getter())
                break
    except Exception as error:  # noqa: BLE001 - another BLAS: the thread count stays "not known"
        log.debug("BLAS thread count not read: %s", error)
    return name, threads


def measure_cpu_compute(*, n: int = DEFAULT_N, repeats: int = 5, min_seconds: float = MIN_SECONDS,
                        max_seconds: float = 10.0) -> CpuCompute:
    """float32 GEMM throughput of every core: the best of at least `repeats` n x n products over `min_seconds`.

    numpy hands the product to its BLAS, which runs it on all cores; one untimed product first (threads
    started, pages touched, the clock up). Best, not mean: another program only ever slows a product down;
    and the window goes on (up to `max_seconds`) until other programs left the CPU alone for a stretch.
    """
    import numpy as np

    if n < 64 or repeats < 1:
        raise ValueError(f"n must be at least 64 and repeats at least 1 (got {n}, {repeats}).")
    if not 0 <= min_seconds <= max_seconds:
        raise ValueError(f"min_seconds must be between 0 and max_seconds (got {min_seconds}, {max_seconds}).")
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)
    work = 2.0 * n * n * n
    samples: list[float] = []
    window = time.perf_counter()
    watch = QuietWatch(min_seconds)
    while True:
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        samples.append(work / max(time.perf_counter() - t0, 1e-9))
        quiet = watch.tick()
        elapsed = time.perf_counter() - window
        if (len(samples) >= repeats and elapsed >= min_seconds and quiet) or elapsed >= max_seconds:
            break
    if not np.isfinite(out[0, 0]):
        raise ArithmeticError("the matrix product gave a non-finite result: the BLAS is broken")
    blas, threads = _blas_info()
    return CpuCompute(flops=max(samples), threads=threads, n=n, repeats=len(samples), samples=samples,
                      seconds=time.perf_counter() - start, blas=blas, others_cores=watch.least_others,
                      measured_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


def measure_compute(*, n: int = DEFAULT_N, repeats: int = 5, min_seconds: float = MIN_SECONDS) -> CpuCompute:
    """measure_cpu_compute, in a child process without OPENBLAS_CORETYPE where the environment sets it (the
    kernels are chosen when the library loads); in this process where nothing pins them or the child fails."""
    pinned = {k: os.environ[k] for k in _KERNEL_PINS if k in os.environ}
    if pinned:
        env = {k: v for k, v in os.environ.items() if k not in pinned}
        root = str(Path(__file__).resolve().parents[2])  # `models` importable from any working directory
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        try:
            done = subprocess.run([sys.executable, "-m", "models.machine.compute", str(n), str(repeats),
                                   str(min_seconds)], env=env, capture_output=True, text=True, timeout=120,
                                  check=True)
            result = CpuCompute(**json.loads(done.stdout.strip().splitlines()[-1]))
            result.blas += f" (without {', '.join(f'{k}={v}' for k, v in pinned.items())})"
            return result
        except (OSError, subprocess.SubprocessError, ValueError, TypeError, IndexError) as error:
            log.warning("GEMM peak not measured in a child process (%s): measured here, with %s", error, pinned)
    return measure_cpu_compute(n=n, repeats=repeats, min_seconds=min_seconds)


if __name__ == "__main__":  # the child process of measure_compute: one JSON line
    print(json.dumps(measure_cpu_compute(n=int(sys.argv[1]), repeats=int(sys.argv[2]),
                                         min_seconds=float(sys.argv[3])).to_json()))
