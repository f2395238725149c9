"""In the worker, before the model loads: the file's first check, the build's facts, and the process set up as
llama-bench sets it (NUMA, priority), plus the memory cap and the threadpool functions."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from models.bench.memguard import limit_private_memory
from models.bench.spec import NUMA_MODES, BenchJob
from models.bench.threadpool import Threadpools, ThreadpoolError, set_process_priority

log = logging.getLogger(__name__)

# For benchmarks/vs_llama_bench.py's before/after only: run without the threadpool, as before llama-bench's was used.
NO_THREADPOOL_ENV = "TOKENOMETER_NO_THREADPOOL"
_GGML_MAGICS = {b"ggml", b"ggmf", b"ggjt", b"ggla", b"ggsn"}


class WorkerFailure(Exception):
    """The job as a whole cannot go on; the message is for the user."""


class BenchTestFailure(Exception):
    """One test cannot run (the others still may); the message is for the user."""


def check_model_file(path: Path) -> None:
    """Refuse a missing, unreadable or non-GGUF file before llama.cpp sees it, with a clear reason."""
    if not path.exists():
        raise WorkerFailure(f"Model file not found: {path}")
    if not path.is_file():
        raise WorkerFailure(f"{path} is not a file.")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        raise WorkerFailure(f"Cannot read the model file {path}: {error.strerror or error}") from error
    if magic != b"GGUF":
        if magic in _GGML_MAGICS or magic[::-1] in _GGML_MAGICS:
            raise WorkerFailure(f"{path.name} is an old GGML-format file; llama.cpp needs GGUF (convert it first).")
        raise WorkerFailure(f"{path.name} is not a GGUF model file (it starts with {magic!r}, not b'GGUF').")


def build_info(llama: Any, devices: Any) -> dict[str, Any]:
    """What llama.cpp build this is and what it runs on, as llama-bench reports it."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        version = getattr(llama, "__version__", "")
    return {"build_commit": devices.commit(), "build_number": 0, "cpu_info": devices.cpu_info(),
            "gpu_info": devices.gpu_info(), "backends": devices.backends(),
            "system_info": (llama.llama_print_system_info() or b"").decode("utf-8", "replace").strip(),
            "llama_cpp_python_version": version}


def prepare_process(llama: Any, job: BenchJob, emit: Any, *, gpu: bool) -> Threadpools | None:
    """NUMA and priority as llama-bench sets them, the memory cap, and the threadpool functions (None: not in
    this build, ggml then makes its own threads per compute)."""
    if job.numa != "disabled":
        llama.llama_numa_init(NUMA_MODES.index(job.numa))
    try:
        set_process_priority(job.prio)
    except ThreadpoolError as error:
        raise WorkerFailure(str(error)) from error
    if not gpu:  # GPU drivers reserve address space in ways a data limit may trip over
        limit = limit_private_memory()
        if limit is not None:
            emit("log", level="info", message=f"Worker memory limit (RLIMIT_DATA): {limit / 2**30:.2f} GiB")
    if os.environ.get(NO_THREADPOOL_ENV):
        emit("log", level="warning", message=f"No ggml threadpool ({NO_THREADPOOL_ENV} is set)")
        return None
    try:
        return Threadpools(llama)
    except (ThreadpoolError, OSError, AttributeError) as error:
        emit("log", level="warning", message=f"No ggml threadpool (ggml makes its own per compute): {error}")
        return None
