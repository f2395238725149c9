"""Child process that asks the installed llama.cpp build which backends and devices it has; prints one JSON object."""

from __future__ import annotations

import ctypes
import json
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

_DEVICE_TYPES = {0: "CPU", 1: "GPU", 2: "IGPU", 3: "ACCEL", 4: "META"}


def _bind(lib: ctypes.CDLL, name: str, restype: Any, argtypes: list[Any]) -> Any:
    """A ggml function from llama.cpp's library (its ggml dependencies resolve through the same handle)."""
    function = getattr(lib, name)
    function.restype = restype
    function.argtypes = argtypes
    return function


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", errors="replace") if value else ""


def _devices(lib: ctypes.CDLL, notes: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    vp, size_t = ctypes.c_void_p, ctypes.c_size_t
    dev_count = _bind(lib, "ggml_backend_dev_count", size_t, [])
    dev_get = _bind(lib, "ggml_backend_dev_get", vp, [size_t])
    dev_name = _bind(lib, "ggml_backend_dev_name", ctypes.c_char_p, [vp])
    dev_desc = _bind(lib, "ggml_backend_dev_description", ctypes.c_char_p, [vp])
    dev_memory = _bind(lib, "ggml_backend_dev_memory", None, [vp, ctypes.POINTER(size_t), ctypes.POINTER(size_t)])
    dev_type = _bind(lib, "ggml_backend_dev_type", ctypes.c_int, [vp])
    backends: list[str] = []
    try:
        reg_count = _bind(lib, "ggml_backend_reg_count", size_t, [])
        reg_get = _bind(lib, "ggml_backend_reg_get", vp, [size_t])
        reg_name = _bind(lib, "ggml_backend_reg_name", ctypes.c_char_p, [vp])
        backends = [_text(reg_name(reg_get(i))) for i in range(reg_count())]
    except AttributeError as error:
        notes.append(f"backend registry not exported: {error}")
    devices: list[dict[str, Any]] = []
    for index in range(dev_count()):
        device = dev_get(index)
        free, total = size_t(0), size_t(0)
        dev_memory(device, ctypes.byref(free), ctypes.byref(total))
        devices.append({"index": index, "name": _text(dev_name(device)), "description": _text(dev_desc(device)),
                        "type": _DEVICE_TYPES.get(dev_type(device), str(dev_type(device))),
                        "memory_free": int(free.value), "memory_total": int(total.value)})
    return devices, backends


def import_bindings(notes: list[str]) -> Any:
    """llama_cpp's ctypes bindings; without numpy/jinja2 (a bare machine) the package body is skipped."""
    try:
        from llama_cpp import llama_cpp as low

        return low
    except ImportError as error:
        import importlib.util
        import types

        spec = importlib.util.find_spec("llama_cpp")
        if spec is None or not spec.submodule_search_locations:
            raise
        notes.append(f"llama_cpp package incomplete here ({error}); using its bindings module alone")
        for name in [m for m in sys.modules if m == "llama_cpp" or m.startswith("llama_cpp.")]:
            del sys.modules[name]
        package = types.ModuleType("llama_cpp")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["llama_cpp"] = package
        from llama_cpp import llama_cpp as low

        return low


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("llama_cpp_python")
    except Exception:  # no dist-info next to a copied package: read the version line of its __init__
        import re
        from pathlib import Path

        package = sys.modules.get("llama_cpp")
        for folder in getattr(package, "__path__", []):
            text = (Path(folder) / "__init__.py").read_text(errors="replace")
            match = re.search(r"__version__\s*=\s*[\"']([^\"']+)", text)
            if match:
                return match.group(1)
        return ""


def probe() -> dict[str, Any]:
    """What this llama.cpp build offers; every part that fails becomes a note."""
    notes: list[str] = []
    out: dict[str, Any] = {"notes": notes}
    try:
        low = import_bindings(notes)
    except Exception as error:  # an import of a native library can fail in many ways
        out["error"] = f"llama_cpp cannot be imported: {error}"
        return out
    out["llama_cpp_python_version"] = _version()
    lib = low._lib
    try:
        low.llama_backend_init()
    except Exception as error:
        notes.append(f"llama_backend_init failed: {error}")
    try:
        out["system_info"] = _text(low.llama_print_system_info()).strip()
    except Exception as error:
        notes.append(f"llama_print_system_info failed: {error}")
    try:
        out["supports_gpu_offload"] = bool(low.llama_supports_gpu_offload())
    except Exception as error:
        notes.append(f"llama_supports_gpu_offload failed: {error}")
    try:
        out["supports_rpc"] = bool(low.llama_supports_rpc())
    except Exception as error:  # older bindings lack the call; the backend list below still names RPC
        notes.append(f"llama_supports_rpc failed: {error}")
    for key, symbol in (("ggml_commit", "ggml_commit"), ("ggml_version", "ggml_version")):
        try:
            out[key] = _text(_bind(lib, symbol, ctypes.c_char_p, [])())
        except AttributeError:
            notes.append(f"{symbol} is not exported by this build")
    try:
        out["devices"], out["backends"] = _devices(lib, notes)
    except AttributeError as error:
        notes.append(f"ggml backend device functions are not exported: {error}")
    return out


def main() -> int:
    # llama.cpp writes its own chatter to stderr; stdout carries only the JSON line.
    print(json.dumps(probe()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
