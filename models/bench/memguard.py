"""In the worker: refuse a context the machine's free memory cannot hold (before llama.cpp allocates it), and cap the
worker's private memory so a runaway allocation fails inside llama.cpp instead of waking the OOM killer."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, replace
from typing import Any

from models.bench.spec import BenchJob, BenchTest
from models.errors import BenchmarkError
from models.units import fmt_bytes

log = logging.getLogger(__name__)

_ALL_LAYERS = 1 << 30  # n_gpu_layers -1 ("all"): the estimate clamps it to the model's layers plus the output


def resolved_job(job: BenchJob) -> BenchJob:
    """The job as llama.cpp will run it, for the estimate: -ngl -1 is every layer, load mode auto maps the file."""
    p = job.params
    return replace(job, params=replace(p, n_gpu_layers=_ALL_LAYERS if p.n_gpu_layers < 0 else p.n_gpu_layers,
                                       use_mmap=True if p.use_mmap is None else p.use_mmap))


def available_memory() -> int:
    """Bytes the system can give without swapping (MemAvailable on Linux)."""
    import psutil

    return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class HostNeed:
    """Host memory one context (and, when the file is not mapped, the weights) will allocate, bytes."""

    kv: int = 0
    compute: int = 0
    output: int = 0
    weights: int = 0

    @property
    def total(self) -> int:
        return self.kv + self.compute + self.output + self.weights


def host_need(job: BenchJob, test: BenchTest, *, header: Any, gpu: bool, cpu_flags: Any,
              weights: bool = False) -> HostNeed:
    """models.fit.estimate's CPU share for this test; `weights` adds the CPU weights (read, not mapped)."""
    from models.fit.estimate import estimate_memory

    p = resolved_job(job).params
    estimate = estimate_memory(header, n_ctx=max(test.n_ctx, 1), type_k=p.type_k, type_v=p.type_v,
                               n_batch=p.n_batch, n_ubatch=p.n_ubatch, n_gpu_layers=p.n_gpu_layers,
                               flash_attn=p.flash_attn, swa_full=False, gpu=gpu, use_mmap=bool(p.use_mmap),
                               cpu_flags=cpu_flags)
    cpu = estimate.devices[0]
    return HostNeed(kv=cpu.kv, compute=cpu.compute, output=cpu.output, weights=cpu.weights if weights else 0)


def check_fits(need: HostNeed, what: str, *, available: int | None = None) -> None:
    """Refuse with the numbers when `need` is more than the free memory (BenchmarkError)."""
    free = available_memory() if available is None else available
    if need.total <= free:
        return
    parts = [f"{name} {fmt_bytes(size)}" for name, size in (("weights", need.weights), ("KV cache", need.kv),
                                                        ("compute", need.compute), ("output", need.output)) if size]
    raise BenchmarkError(
        f"{what} needs about {fmt_bytes(need.total)} of memory ({', '.join(parts)}) but only {fmt_bytes(free)} is free; "
        "refused before llama.cpp allocates it. Use fewer tokens (-p/-n/-d), a quantized KV cache (-ctk/-ctv q8_0) "
        "or close other programs.")


def limit_private_memory(*, headroom: int | None = None) -> int | None:
    """Cap this process's data segment (RLIMIT_DATA: private writable memory, so not the mapped model file, which
    RLIMIT_AS would wrongly count) at what it holds now plus the free memory; returns the limit or None (not Linux).

    An allocation beyond it fails inside llama.cpp, which reports it, instead of the whole machine swapping."""
    if not sys.platform.startswith("linux"):
        return None
    import resource

    from models.bench.procmem import data_size

    current = data_size()
    if current is None:
        return None
    limit = current + (available_memory() if headroom is None else headroom)
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY and soft < limit:
        return soft  # someone set a tighter limit already: keep it
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    return limit
