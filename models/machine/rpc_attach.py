"""In the benchmark worker: RPC servers probed, then registered with llama.cpp as llama-bench's -rpc does; a server
lost during the run ends it as a failure that names the server, and no wait on the network is unbounded."""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from models.machine.rpc import (REBUILD_HINT, RUN_TIMEOUT_ENV, Endpoint, EndpointProbe, RpcError, parse_endpoints,
                                probe_endpoint, run_timeout)

log = logging.getLogger(__name__)

_DEVICE_TYPES = {0: "CPU", 1: "GPU", 2: "IGPU", 3: "ACCEL", 4: "META"}
_ABORT_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
_keep: list[Any] = []  # ctypes callbacks must outlive every call llama.cpp makes to them


def _fn(lib: Any, name: str, restype: Any, argtypes: list[Any]) -> Any:
    function = getattr(lib, name)
    function.restype, function.argtypes = restype, argtypes
    return function


def _library(llama: Any) -> Any:
    """libllama's handle; ggml's symbols resolve through it (its dependencies load with it)."""
    low: Any = getattr(llama, "llama_cpp", None) or sys.modules.get("llama_cpp.llama_cpp")
    return low._lib


def llama_bench_backends(local: str) -> str:
    """llama-bench's backends field once RPC devices are in use: the local non-CPU backends, then RPC."""
    names = [name for name in local.split(",") if name and name != "CPU"]
    return ",".join(names + ["RPC"])


def _devices(lib: Any, *, rpc: bool) -> list[dict[str, Any]]:
    vp, size_t = ctypes.c_void_p, ctypes.c_size_t
    count = _fn(lib, "ggml_backend_dev_count", size_t, [])
    get = _fn(lib, "ggml_backend_dev_get", vp, [size_t])
    name = _fn(lib, "ggml_backend_dev_name", ctypes.c_char_p, [vp])
    desc = _fn(lib, "ggml_backend_dev_description", ctypes.c_char_p, [vp])
    kind = _fn(lib, "ggml_backend_dev_type", ctypes.c_int, [vp])
    memory = _fn(lib, "ggml_backend_dev_memory", None, [vp, ctypes.POINTER(size_t), ctypes.POINTER(size_t)])
    reg_of = _fn(lib, "ggml_backend_dev_backend_reg", vp, [vp])
    reg_name = _fn(lib, "ggml_backend_reg_name", ctypes.c_char_p, [vp])
    out = []
    for index in range(count()):
        dev = get(index)
        if ((reg_name(reg_of(dev)) or b"") == b"RPC") != rpc:
            continue
        free, total = size_t(0), size_t(0)
        memory(dev, ctypes.byref(free), ctypes.byref(total))
        out.append({"name": (name(dev) or b"").decode("utf-8", "replace"),
                    "description": (desc(dev) or b"").decode("utf-8", "replace"),
                    "type": _DEVICE_TYPES.get(kind(dev), str(kind(dev))),
                    "memory_free": int(free.value), "memory_total": int(total.value)})
    return out


def _refused(endpoint: Endpoint, *, within: float = 2.0) -> bool:
    """Whether the server's port refuses connections within `within` seconds: a killed server's listening socket
    closes a moment after the connection to it was reset, so one try right away can still get through."""
    deadline = time.monotonic() + within
    while True:
        try:
            socket.create_connection((endpoint.host, endpoint.port), timeout=1.0).close()
        except ConnectionRefusedError:
            return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def abort_reason(message: str, endpoints: tuple[Endpoint, ...], timeout: float) -> str | None:
    """What ggml's abort message means for the user when it comes from the RPC client, else None."""
    if "RPC" not in message and "ggml-rpc" not in message:
        return None
    gone = [str(e) for e in endpoints if _refused(e)]
    if gone:
        who = ", ".join(gone)
        return (f"Lost the RPC server {who}: nothing listens there any more (it stopped or was killed during the "
                f"run). llama.cpp: {message.strip()}")
    who = ", ".join(str(e) for e in endpoints)
    return (f"An RPC server ({who}) stopped answering: no answer within {timeout:g} s (${RUN_TIMEOUT_ENV}) "
            f"or the connection broke. llama.cpp: {message.strip()}")


def _install_abort_reporter(lib: Any, endpoints: tuple[Endpoint, ...], timeout: float,
                            emit: Callable[..., None]) -> None:
    """ggml aborts the process when a server goes away; say which server and why before it does."""
    def on_abort(raw: bytes | None) -> None:
        message = (raw or b"").decode("utf-8", "replace")
        try:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
            reason = abort_reason(message, endpoints, timeout)
            if reason:
                emit("failure", message=reason, detail=message, log_tail=[])
        except Exception as error:  # nothing may escape into native code; the abort follows either way
            log.debug("abort reporter: %s", error)

    callback = _ABORT_CALLBACK(on_abort)
    _keep.append(callback)
    _fn(lib, "ggml_set_abort_callback", ctypes.c_void_p, [_ABORT_CALLBACK])(callback)


def _open_fds() -> list[int]:
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return [int(name) for name in os.listdir(folder) if name.isdigit()]
        except OSError:
            continue
    return []


def arm_sockets(peers: set[tuple[str, int]], timeout: float) -> int:
    """Give every open TCP connection to one of `peers` a send and receive timeout; returns how many were found.
    ggml's client sets none, so a server that stops answering would hold a run for ever."""
    armed = 0
    timeval = struct.pack("ll", int(timeout), int((timeout % 1) * 1e6))
    for fd in _open_fds():
        try:
            sock = socket.socket(fileno=fd)  # no duplicate: nothing to close, nothing to leak
        except OSError:
            continue  # not a socket
        try:
            if sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM and sock.getpeername() in peers:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
                armed += 1
        except OSError:
            pass
        finally:
            sock.detach()  # the descriptor stays ggml's (or whoever's) and open
    return armed


def _watch_sockets(peers: set[tuple[str, int]], timeout: float) -> threading.Thread:
    """Arm new connections as ggml opens them (at load, and again if it reconnects); once a second is enough."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(1.0):
            arm_sockets(peers, timeout)

    thread = threading.Thread(target=watch, name="rpc-socket-timeouts", daemon=True)
    thread.start()
    return thread


def attach_rpc(llama: Any, text: str, *, emit: Callable[..., None], backends: str = "CPU") -> dict[str, Any]:
    """Probe every server (RTT, bandwidth, devices), register it with llama.cpp, and return the result fields:
    rpc (the endpoints), topology (endpoints with devices and link figures, and the local devices), backends.
    RpcError with the reason when a server cannot be used; {} when `text` names none."""
    endpoints = parse_endpoints(text)
    if not endpoints:
        return {}
    if not bool(llama.llama_supports_rpc()):
        raise RpcError(REBUILD_HINT)
    lib = _library(llama)
    probes: list[EndpointProbe] = []
    for endpoint in endpoints:
        emit("log", level="info", message=f"Probing the RPC server {endpoint}")
        probes.append(probe_endpoint(endpoint))
    timeout = run_timeout()
    _install_abort_reporter(lib, endpoints, timeout, emit)
    vp = ctypes.c_void_p
    reg = _fn(lib, "ggml_backend_reg_by_name", vp, [ctypes.c_char_p])(b"RPC")
    address = _fn(lib, "ggml_backend_reg_get_proc_address", vp, [vp, ctypes.c_char_p])(
        reg, b"ggml_backend_rpc_add_server")
    if not address:
        raise RpcError("this llama.cpp build's RPC backend does not offer ggml_backend_rpc_add_server")
    add_server = ctypes.CFUNCTYPE(vp, ctypes.c_char_p)(address)
    register = _fn(lib, "ggml_backend_register", None, [vp])
    reg_dev_count = _fn(lib, "ggml_backend_reg_dev_count", ctypes.c_size_t, [vp])
    reg_dev_get = _fn(lib, "ggml_backend_reg_dev_get", vp, [vp, ctypes.c_size_t])
    dev_name = _fn(lib, "ggml_backend_dev_name", ctypes.c_char_p, [vp])
    held_regs = []
    for endpoint, probe in zip(endpoints, probes):
        server_reg = add_server(str(endpoint).encode())
        if not server_reg:
            raise RpcError(f"RPC server {endpoint} offers no device.")
        register(server_reg)
        held_regs.append(server_reg)  # as llama-bench: its devices join the registry, and llama.cpp's default device list
        for index in range(int(reg_dev_count(server_reg))):
            name = (dev_name(reg_dev_get(server_reg, index)) or b"").decode()
            if index < len(probe.devices):
                probe.devices[index].name = name
    # ggml keeps one connection per server while something holds it, and opens short-lived ones otherwise: a
    # backend held here for the whole run pins that connection, so it is armed with timeouts before any real
    # traffic (a timeout set on a socket does not reach a receive already waiting on it).
    dev_init = _fn(lib, "ggml_backend_dev_init", vp, [vp, ctypes.c_char_p])
    for server_reg in held_regs:
        backend = dev_init(reg_dev_get(server_reg, 0), None)
        if backend:
            _keep.append(backend)
    peers = {(socket.gethostbyname(e.host), e.port) for e in endpoints}
    if arm_sockets(peers, timeout) < len(endpoints):
        emit("log", level="warning", message="Could not put a timeout on every RPC connection; a server that "
                                             "stops answering may hold the run")
    _watch_sockets(peers, timeout)  # any connection ggml opens later is armed within a second
    topology = {"endpoints": [p.to_json() for p in probes], "local_devices": _devices(lib, rpc=False),
                "rpc_timeout_s": timeout}
    return {"rpc": ",".join(str(e) for e in endpoints), "topology": topology,
            "backends": llama_bench_backends(backends)}

