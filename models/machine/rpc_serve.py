"""Child process that serves this machine's devices with ggml's own RPC server (ggml_backend_rpc_start_server)."""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import signal
import sys
from typing import Any

from models.machine.probe_worker import _DEVICE_TYPES, _bind, _text, import_bindings
from models.machine.rpc import REBUILD_HINT

log = logging.getLogger(__name__)

EXIT_NO_RPC = 3  # the build has no RPC backend
EXIT_BAD_DEVICE = 4  # a --device name this build does not have
EXIT_STOPPED = 5  # ggml's server returned: it could not bind, or could not set up a device


def _say(kind: str, **data: Any) -> None:
    """One JSON line for the supervising command; ggml's own output shares this stdout, hence the marker."""
    print(json.dumps({"rpc_serve": kind, **data}), flush=True)


def _device_info(lib: Any, device: int) -> dict[str, Any]:
    vp, size_t = ctypes.c_void_p, ctypes.c_size_t
    free, total = size_t(0), size_t(0)
    _bind(lib, "ggml_backend_dev_memory", None, [vp, ctypes.POINTER(size_t), ctypes.POINTER(size_t)])(
        device, ctypes.byref(free), ctypes.byref(total))
    kind = _bind(lib, "ggml_backend_dev_type", ctypes.c_int, [vp])(device)
    return {"name": _text(_bind(lib, "ggml_backend_dev_name", ctypes.c_char_p, [vp])(device)),
            "description": _text(_bind(lib, "ggml_backend_dev_description", ctypes.c_char_p, [vp])(device)),
            "type": _DEVICE_TYPES.get(kind, str(kind)), "memory_free": int(free.value),
            "memory_total": int(total.value)}


def choose_devices(lib: Any, names: list[str]) -> tuple[list[int], list[dict[str, Any]]] | str:
    """The devices to serve, as rpc-server picks them: the named ones, else every GPU, else the CPU; or why not."""
    vp, size_t = ctypes.c_void_p, ctypes.c_size_t
    count = _bind(lib, "ggml_backend_dev_count", size_t, [])
    get = _bind(lib, "ggml_backend_dev_get", vp, [size_t])
    by_name = _bind(lib, "ggml_backend_dev_by_name", vp, [ctypes.c_char_p])
    every = [get(i) for i in range(count())]
    infos = {dev: _device_info(lib, dev) for dev in every}
    chosen: list[int] = []
    for name in names:
        dev = by_name(name.encode())
        if not dev:
            listed = ", ".join(f"{i['name']} ({i['description']})" for i in infos.values()) or "none"
            return f"unknown device {name!r}; this build has: {listed}"
        chosen.append(dev)
    if not chosen:
        chosen = [dev for dev in every if infos[dev]["type"] not in ("CPU", "ACCEL")]
    if not chosen:
        chosen = [dev for dev in every if infos[dev]["type"] == "CPU"][:1]
    if not chosen:
        return "this build offers no device to serve"
    return chosen, [infos.get(dev) or _device_info(lib, dev) for dev in chosen]


def serve(*, host: str, port: int, devices: list[str], threads: int, cache_dir: str | None) -> int:
    """Blocks in ggml's accept loop until the process is stopped; returns only when ggml's server gives up."""
    notes: list[str] = []
    low = import_bindings(notes)
    low.llama_backend_init()
    lib = low._lib
    vp = ctypes.c_void_p
    reg = _bind(lib, "ggml_backend_reg_by_name", vp, [ctypes.c_char_p])(b"RPC")
    if not reg:
        _say("error", message=REBUILD_HINT)
        return EXIT_NO_RPC
    address = _bind(lib, "ggml_backend_reg_get_proc_address", vp, [vp, ctypes.c_char_p])(
        reg, b"ggml_backend_rpc_start_server")
    if not address:
        _say("error", message="this llama.cpp build's RPC backend does not offer ggml_backend_rpc_start_server")
        return EXIT_NO_RPC
    picked = choose_devices(lib, devices)
    if isinstance(picked, str):
        _say("error", message=picked)
        return EXIT_BAD_DEVICE
    handles, infos = picked
    endpoint = f"{host}:{port}"
    _say("serving", endpoint=endpoint, devices=infos, threads=threads, cache=cache_dir or "")
    start = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t,
                             ctypes.POINTER(vp))(address)
    array = (vp * len(handles))(*handles)
    start(endpoint.encode(), cache_dir.encode() if cache_dir else None, threads, len(handles), array)
    # ggml's loop only returns when it failed: the socket could not be bound, or a device could not start.
    _say("error", message=f"llama.cpp's RPC server stopped: it could not bind {endpoint} or start a device "
                          "(see the lines above)")
    return EXIT_STOPPED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.machine.rpc_serve")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", action="append", default=[])
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--cache", default=None)
    args = parser.parse_args(argv)
    # The supervising command stops this process with SIGTERM; a Ctrl-C reaches the whole terminal's process
    # group, and Python could not act on it while ggml's accept() holds the thread anyway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from models.bench.lifeline import die_with_parent

    die_with_parent()  # a server must not outlive the command that started it
    return serve(host=args.host, port=args.port, devices=args.device, threads=args.threads, cache_dir=args.cache)


if __name__ == "__main__":
    sys.exit(main())
