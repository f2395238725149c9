"""In the worker: ggml's CPU threadpool created and attached as llama-bench does, and its process priority."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path
from typing import Any

from models.bench.spec import parse_cpu_mask

log = logging.getLogger(__name__)

GGML_MAX_N_THREADS = 512
_DEVICE_TYPE_CPU = 0


class ThreadpoolParams(ctypes.Structure):
    """struct ggml_threadpool_params (ggml.h)."""

    _fields_ = [("cpumask", ctypes.c_bool * GGML_MAX_N_THREADS), ("n_threads", ctypes.c_int),
                ("prio", ctypes.c_int), ("poll", ctypes.c_uint32), ("strict_cpu", ctypes.c_bool),
                ("paused", ctypes.c_bool)]


class ThreadpoolError(RuntimeError):
    """The threadpool cannot be made; the message is for the user."""


def _lib_dir(llama: Any) -> Path:
    # The folder llama_cpp itself loaded from (LLAMA_CPP_LIB_PATH points it at another build).
    return Path(getattr(llama, "_base_path", None) or getattr(getattr(llama, "llama_cpp", None), "_base_path", None)
                or Path(llama.__file__).parent / "lib")


class Threadpools:
    """ggml_threadpool_new/free from the CPU backend (found through its registry, as llama-bench finds them, so a
    dynamically loaded CPU backend works too) and llama_attach_threadpool from libllama, bound with ctypes:
    llama-cpp-python does not bind them. Without a threadpool ggml makes one per graph compute, and on builds
    without OpenMP (macOS's default) that starts and joins its threads for every generated token."""

    def __init__(self, llama: Any) -> None:
        from llama_cpp._ctypes_extensions import load_shared_library  # type: ignore[import-not-found]

        lib_dir = _lib_dir(llama)
        ggml = load_shared_library("ggml", lib_dir)
        base = load_shared_library("ggml-base", lib_dir)
        for func, restype, argtypes in (
            (ggml.ggml_backend_dev_by_type, ctypes.c_void_p, [ctypes.c_int]),
            (ggml.ggml_backend_dev_backend_reg, ctypes.c_void_p, [ctypes.c_void_p]),
            (ggml.ggml_backend_reg_get_proc_address, ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]),
            (base.ggml_threadpool_params_default, ThreadpoolParams, [ctypes.c_int]),
        ):
            func.restype, func.argtypes = restype, argtypes
        self._params_default = base.ggml_threadpool_params_default
        cpu_dev = ggml.ggml_backend_dev_by_type(_DEVICE_TYPE_CPU)
        if not cpu_dev:
            raise ThreadpoolError("ggml's CPU backend is not loaded.")
        reg = ggml.ggml_backend_dev_backend_reg(cpu_dev)
        new_addr = ggml.ggml_backend_reg_get_proc_address(reg, b"ggml_threadpool_new")
        free_addr = ggml.ggml_backend_reg_get_proc_address(reg, b"ggml_threadpool_free")
        if not new_addr or not free_addr:
            raise ThreadpoolError("This llama.cpp build's CPU backend has no threadpool functions.")
        self._new = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.POINTER(ThreadpoolParams))(new_addr)
        self._free = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(free_addr)
        lib = getattr(getattr(llama, "llama_cpp", llama), "_lib", None)
        if lib is None:
            raise ThreadpoolError("The loaded libllama is not reachable through llama_cpp.")
        self._attach = lib.llama_attach_threadpool
        self._attach.restype, self._attach.argtypes = None, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self._detach = lib.llama_detach_threadpool
        self._detach.restype, self._detach.argtypes = None, [ctypes.c_void_p]

    def params(self, n_threads: int, *, cpu_mask: str, cpu_strict: bool, poll: int, prio: int) -> ThreadpoolParams:
        """llama-bench's: ggml's defaults for n_threads, then its mask, strictness, polling and priority."""
        params = self._params_default(n_threads)
        for cpu, on in enumerate(parse_cpu_mask(cpu_mask)):
            params.cpumask[cpu] = params.cpumask[cpu] or on
        params.strict_cpu, params.poll, params.prio = cpu_strict, poll, prio
        return params

    def attach(self, ctx: Any, params: ThreadpoolParams) -> int:
        """Create a threadpool and attach it to the context (for prompt and generation); returns its handle."""
        pool = self._new(ctypes.byref(params))
        if not pool:
            raise ThreadpoolError(f"ggml could not create a threadpool of {params.n_threads} threads.")
        self._attach(ctx, pool, None)
        return int(pool)

    def release(self, ctx: Any, pool: int) -> None:
        """Detach from a context that is still alive, then free the threadpool."""
        if ctx:
            self._detach(ctx)
        self._free(pool)


def set_process_priority(prio: int) -> None:
    """llama.cpp's set_process_priority: nice 5/0/-5/-10/-20 (POSIX) or the priority class (Windows)."""
    if prio == 0:
        return
    if sys.platform == "win32":
        import psutil

        classes = {-1: psutil.BELOW_NORMAL_PRIORITY_CLASS, 1: psutil.ABOVE_NORMAL_PRIORITY_CLASS,  # type: ignore[attr-defined]
                   2: psutil.HIGH_PRIORITY_CLASS, 3: psutil.REALTIME_PRIORITY_CLASS}  # type: ignore[attr-defined]
        try:
            psutil.Process().nice(classes[prio])
        except (psutil.Error, OSError) as error:
            raise ThreadpoolError(f"Cannot set the process priority to {prio}: {error}") from error
        return
    nice = {-1: 5, 1: -5, 2: -10, 3: -20}[prio]
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as error:
        raise ThreadpoolError(f"Cannot set the process priority to {prio} (nice {nice}): {error.strerror or error}; "
                              "raising the priority needs administrator rights.") from error
