"""In the worker: llama.cpp's log captured through llama_log_set (buffer sizes, errors, a tail) and ggml's devices."""

from __future__ import annotations

import ctypes
import logging
import re
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# "load_tensors:   CPU_Mapped model buffer size =    72.00 MiB", "llama_kv_cache:        CPU KV buffer size = ..."
BUFFER_LINE = re.compile(r"(?P<device>\S+)\s+(?P<kind>model|KV|compute|output|RS)\s+buffer size\s*=\s*"
                         r"(?P<mib>[0-9]+(?:\.[0-9]+)?)\s*MiB")
BUFFER_KINDS = ("model", "KV", "compute", "output", "RS")
_LEVELS = {0: "info", 1: "debug", 2: "info", 3: "warning", 4: "error"}  # enum ggml_log_level
_DEBUG = 1
_ERROR = 4
_CONT = 5  # GGML_LOG_LEVEL_CONT: the text continues the previous line
# "load_tensors: loading model tensors, this can take a while... (load_mode = mmap)": what auto resolved to.
LOAD_MODE_LINE = re.compile(r"\(load_mode = (?P<mode>[a-z+]+)\)")


def parse_buffer_line(line: str) -> tuple[str, str, int] | None:
    """(device, kind, bytes) for one of llama.cpp's buffer size lines, else None."""
    match = BUFFER_LINE.search(line)
    if not match:
        return None
    return match["device"], match["kind"], int(round(float(match["mib"]) * 1024 * 1024))


class Devices:
    """ggml's backend registry, read through ctypes (llama-cpp-python does not bind these calls)."""

    def __init__(self, llama: Any) -> None:
        self._ggml: Any = None
        self._base: Any = None
        try:
            from llama_cpp._ctypes_extensions import load_shared_library  # type: ignore[import-not-found]

            # The folder llama_cpp itself loaded from (LLAMA_CPP_LIB_PATH points it at another build).
            lib_dir = (getattr(llama, "_base_path", None) or getattr(getattr(llama, "llama_cpp", None), "_base_path", None)
                       or Path(llama.__file__).parent / "lib")
            self._ggml = load_shared_library("ggml", lib_dir)
            self._base = load_shared_library("ggml-base", lib_dir)
            g = self._ggml
            for name, restype, argtypes in (
                ("ggml_backend_dev_count", ctypes.c_size_t, []),
                ("ggml_backend_dev_get", ctypes.c_void_p, [ctypes.c_size_t]),
                ("ggml_backend_dev_description", ctypes.c_char_p, [ctypes.c_void_p]),
                ("ggml_backend_dev_type", ctypes.c_int, [ctypes.c_void_p]),
                ("ggml_backend_dev_memory", None, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                                   ctypes.POINTER(ctypes.c_size_t)]),
                ("ggml_backend_reg_count", ctypes.c_size_t, []),
                ("ggml_backend_reg_get", ctypes.c_void_p, [ctypes.c_size_t]),
                ("ggml_backend_reg_name", ctypes.c_char_p, [ctypes.c_void_p]),
            ):
                func = getattr(g, name)
                func.restype, func.argtypes = restype, argtypes
            self._base.ggml_commit.restype, self._base.ggml_commit.argtypes = ctypes.c_char_p, []
        except (OSError, AttributeError, ImportError, RuntimeError) as error:
            # Older or unusual builds: the benchmark still runs, only device details are missing.
            log.debug("ggml device registry not available: %s", error)
            self._ggml = self._base = None

    def _devices(self) -> list[tuple[int, str, Any]]:
        if self._ggml is None:
            return []
        out = []
        for index in range(int(self._ggml.ggml_backend_dev_count())):
            dev = self._ggml.ggml_backend_dev_get(index)
            desc = (self._ggml.ggml_backend_dev_description(dev) or b"").decode("utf-8", "replace")
            out.append((int(self._ggml.ggml_backend_dev_type(dev)), desc, dev))
        return out

    def cpu_info(self) -> str:
        """The CPU and accelerator devices' descriptions, as llama-bench's cpu_info."""
        return ", ".join(desc for kind, desc, _ in self._devices() if kind in (0, 3))

    def gpu_info(self) -> str:
        """The GPU and integrated GPU devices' descriptions, as llama-bench's gpu_info."""
        return ", ".join(desc for kind, desc, _ in self._devices() if kind in (1, 2))

    def gpu_memory(self) -> list[tuple[int, int]]:
        """(free, total) bytes per dedicated GPU device."""
        out = []
        for kind, _desc, dev in self._devices():
            if kind == 1:
                free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
                self._ggml.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
                out.append((int(free.value), int(total.value)))
        return out

    def backends(self) -> str:
        """The registered backends other than CPU (or "CPU"), as llama-bench's backends field."""
        if self._ggml is None:
            return "CPU"
        names = []
        for index in range(int(self._ggml.ggml_backend_reg_count())):
            name = (self._ggml.ggml_backend_reg_name(self._ggml.ggml_backend_reg_get(index)) or b"").decode()
            if name and name != "CPU" and not name.startswith("RPC"):
                names.append(name)
        return ",".join(names) or "CPU"

    def commit(self) -> str:
        """The llama.cpp/ggml source commit the library was built from ("unknown" when built without git)."""
        if self._base is None:
            return "unknown"
        return (self._base.ggml_commit() or b"unknown").decode("utf-8", "replace")


class LlamaLog:
    """Receives every llama.cpp log line: keeps a tail, parses buffer sizes, forwards lines as log events."""

    def __init__(self, llama: Any, emit: Callable[..., None], *, tail_lines: int = 60) -> None:
        self._emit = emit
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._errors: deque[str] = deque(maxlen=8)
        self._partial = ""
        self._level = 1
        self._quiet = False
        self.load_mode = ""  # the load mode llama.cpp used, from its log ("mmap", "none", ...)
        self._section = "model"
        self._buffers: dict[str, dict[str, int]] = {"model": {}, "context": {}}
        self._lock = threading.Lock()
        # The ctypes callback object must outlive every call llama.cpp makes into it.
        self._callback = llama.llama_log_callback(self._on_log)
        llama.llama_log_set(self._callback, ctypes.c_void_p(0))
        self.devices = Devices(llama)

    def _on_log(self, level: int, text: bytes | None, _user_data: Any) -> None:
        # Called from inside llama.cpp, on CUDA once per token (a debug line per CUDA-graph reuse): drop what is
        # not kept before any decoding or locking; in quiet mode (timed repetitions) everything but errors.
        effective = self._level if level == _CONT else level
        if effective == _DEBUG or (self._quiet and effective != _ERROR):
            self._level = effective
            return
        # Never let an exception cross back into C.
        try:
            with self._lock:
                if level != _CONT:
                    self._level = level
                self._partial += (text or b"").decode("utf-8", "replace")
                while "\n" in self._partial:
                    line, self._partial = self._partial.split("\n", 1)
                    self._line(self._level, line.rstrip())
        except Exception:  # noqa: BLE001
            pass

    def _line(self, level: int, line: str) -> None:
        name = _LEVELS.get(level, "info")
        if not line.strip():
            return
        self._tail.append(line)
        if name == "error":
            self._errors.append(line)
        mode = LOAD_MODE_LINE.search(line)
        if mode:
            self.load_mode = mode["mode"]
        parsed = parse_buffer_line(line)
        if parsed:
            device, kind, size = parsed
            section = "model" if kind == "model" else "context"
            key = f"{device}:{kind}"
            bucket = self._buffers[section]
            bucket[key] = bucket.get(key, 0) + size
        self._emit("log", level=name, message=line, source="llama.cpp")

    def quiet(self, on: bool) -> None:
        """During timed repetitions: pass on nothing but errors (no decoding, no events, no pipe writes)."""
        self._quiet = on

    def start_section(self, section: str) -> None:
        """A model load or a new context begins: its buffer lines replace the previous ones of that kind."""
        with self._lock:
            self._section = section
            self._buffers[section] = {}
            self._errors.clear()

    def last_error(self) -> str:
        """llama.cpp's first error line since the last section began: the root of a failed load (the rest echo it)."""
        with self._lock:
            return self._errors[0].strip() if self._errors else ""

    def tail(self) -> list[str]:
        with self._lock:
            return list(self._tail)

    def buffers(self) -> dict[str, int]:
        """Bytes per "device:kind", for the model and the current context."""
        with self._lock:
            return {**self._buffers["model"], **self._buffers["context"]}

    def buffer_totals(self) -> dict[str, int]:
        """Bytes per kind (model, KV, compute, output, RS), summed over devices."""
        totals = dict.fromkeys(BUFFER_KINDS, 0)
        for key, size in self.buffers().items():
            totals[key.rsplit(":", 1)[1]] += size
        return totals
