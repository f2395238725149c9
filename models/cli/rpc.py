"""CLI: tokenometer rpc-server (serve this machine's devices to other machines), rpc-probe (check servers)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from models.errors import TokenometerError
from models.machine.rpc import DEFAULT_PORT, Endpoint, RpcError, parse_endpoints, probe_endpoint
from models.text import printable
from models.units import fmt_bytes

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # llama.cpp's backend init (a GPU driver may take long), then the socket must answer
STOP_GRACE_S = 5.0

INSECURE_WARNING = ("WARNING: {endpoint} is not a loopback address. llama.cpp's RPC protocol has no authentication "
                    "and no encryption: anyone who can reach this port can run code on this machine's backend and "
                    "read what it holds (models, prompts). Serve only on a network you trust, behind a firewall.")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's subcommands (each sets `handler`)."""
    server = subparsers.add_parser(
        "rpc-server", help="serve this machine's devices to other machines (llama.cpp's RPC server)",
        description="Start llama.cpp's RPC server for this machine's devices, so `tokenometer bench --rpc` (or "
                    "llama-bench -rpc) on another machine can use them. Stop it with Ctrl-C. The protocol has no "
                    "authentication or encryption: it listens on 127.0.0.1 unless --host says otherwise.")
    server.add_argument("--host", default="127.0.0.1",
                        help="IPv4 address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every "
                             "interface)")
    server.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    server.add_argument("--device", action="append", default=[], metavar="DEV[,DEV]",
                        help="devices to serve by llama.cpp name (CUDA0, Vulkan1, CPU, ...; see tokenometer "
                             "hardware); default: every GPU, else the CPU")
    server.add_argument("--threads", type=int, default=None, help="threads for the CPU device (default: the "
                                                                    "cores llama-bench would use)")
    server.add_argument("--cache", nargs="?", const="", default=None, metavar="DIR",
                        help="keep a cache of received tensors in DIR (default with no DIR: llama.cpp's own, "
                             "$LLAMA_CACHE or ~/.cache/llama.cpp/rpc), so a model is sent once")
    server.set_defaults(handler=_rpc_server)

    probe = subparsers.add_parser("rpc-probe", help="check RPC servers: reachability, devices, round trip, bandwidth",
                                  description="Connect to each RPC server as llama.cpp does, and report its "
                                              "protocol version, devices with their memory, and the link's round "
                                              "trip time and bandwidth.")
    probe.add_argument("endpoints", metavar="HOST:PORT[,HOST:PORT]")
    probe.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each answer (default 5)")
    probe.add_argument("--json", action="store_true", help="print JSON instead of text")
    probe.set_defaults(handler=_rpc_probe)


def _listen_address(host: str, port: int) -> str:
    """The IPv4 literal ggml's server binds (it takes no names); refuses a port that is taken, with the reason."""
    if not 1 <= port <= 65535:
        raise TokenometerError(f"--port must be from 1 to 65535, got {port}.")
    try:
        address = socket.gethostbyname(host)
    except (socket.gaierror, UnicodeError) as error:
        raise TokenometerError(f"--host {host!r} is not an IPv4 address or a name of one ({error}).") from None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ggml's server binds
        try:
            probe.bind((address, port))
        except OSError as error:
            raise TokenometerError(f"Cannot listen on {address}:{port}: {error.strerror or error} (another server "
                                   "on that port? pick another with --port).") from None
    return address


def _default_cache() -> str:
    """rpc-server's cache folder, so both tools share one: $LLAMA_CACHE/rpc, else the platform's cache/llama.cpp/rpc."""
    import os

    from platformdirs import user_cache_dir

    root = os.environ.get("LLAMA_CACHE") or (
        str(Path.home() / ".cache" / "llama.cpp") if sys.platform.startswith("linux") else
        str(Path(user_cache_dir("llama.cpp", appauthor=False))))
    return str(Path(root) / "rpc")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the server like Ctrl-C does (a service manager's stop, kill PID)."""
    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a test calling the handler): nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


_OUTPUT = threading.Lock()


def _say(text: str) -> None:
    """One whole line to stdout: the relay thread and the main thread both write, and print() writes a line's text
    and its newline separately, so ggml's lines could otherwise cut into ours (and a reader miss "Ready:")."""
    with _OUTPUT:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _relay(child: subprocess.Popen[str], messages: queue.Queue[dict[str, Any] | None]) -> None:
    """The child's JSON lines to the queue, ggml's own lines on to our stdout; None when its output ends."""
    assert child.stdout is not None
    for line in child.stdout:
        text = line.rstrip("\n")
        if text.startswith('{"rpc_serve"'):
            try:
                messages.put(json.loads(text))
                continue
            except ValueError:
                pass
        _say(printable(text))
    messages.put(None)


def _wait_ready(child: subprocess.Popen[str], endpoint: Endpoint, deadline: float) -> None:
    """Until the server answers a handshake (ggml binds only after it has set up every device)."""
    target = Endpoint("127.0.0.1" if endpoint.host == "0.0.0.0" else endpoint.host, endpoint.port)
    while True:
        if child.poll() is not None:
            raise TokenometerError(f"The RPC server exited (code {child.returncode}) before it listened on "
                                   f"{endpoint}; see the lines above.")
        try:
            probe_endpoint(target, timeout=2.0, rtt_rounds=1, transfer_bytes=0)
            return
        except RpcError as error:
            if time.monotonic() > deadline:
                raise TokenometerError(f"The RPC server did not answer on {endpoint} within {START_TIMEOUT_S:g} s: "
                                       f"{error}") from None
        time.sleep(0.2)


def _rpc_server(args: argparse.Namespace) -> int:
    from models.bench.spec import default_threads
    from models.child import PROJECT_ROOT, child_env

    address = _listen_address(args.host, args.port)
    endpoint = Endpoint(address, args.port)
    threads = args.threads if args.threads is not None else default_threads()
    if threads < 1:
        raise TokenometerError(f"--threads must be at least 1, got {threads}.")
    devices = [name.strip() for value in args.device for name in value.replace("/", ",").split(",") if name.strip()]
    cache = None if args.cache is None else (args.cache or _default_cache())
    if cache is not None:
        try:
            Path(cache).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TokenometerError(f"Cannot create the cache folder {cache}: {error.strerror or error}.") from None
    if not endpoint.is_loopback:
        print(INSECURE_WARNING.format(endpoint=endpoint), file=sys.stderr, flush=True)
    command = [sys.executable, "-m", "models.machine.rpc_serve", "--host", address, "--port", str(args.port),
               "--threads", str(threads), *[f"--device={name}" for name in devices],
               *(["--cache", cache] if cache else [])]
    messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
    with _sigterm_as_interrupt():
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=child_env(), cwd=PROJECT_ROOT,
                                 encoding="utf-8", errors="replace")
        try:
            threading.Thread(target=_relay, args=(child, messages), name="rpc-server-output", daemon=True).start()
            deadline = time.monotonic() + START_TIMEOUT_S
            try:
                first = messages.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                first = None
            if first is None or first.get("rpc_serve") != "serving":
                reason = (first or {}).get("message") or "it exited without saying why"
                raise TokenometerError(f"The RPC server could not start: {reason}")
            _say(f"Serving on {endpoint} with {threads} CPU threads"
                 + (f", tensor cache in {first.get('cache')}" if first.get("cache") else "") + ":")
            for dev in first.get("devices", []):
                _say(f"  {dev['name']} ({dev['type']}): {printable(dev['description'])}, "
                     f"{fmt_bytes(dev['memory_free'])} free of {fmt_bytes(dev['memory_total'])}")
            _wait_ready(child, endpoint, deadline)
            _say(f"Ready: use it with `tokenometer bench --rpc {endpoint.host if endpoint.host != '0.0.0.0' else 'THIS_HOST'}"
                 f":{endpoint.port}` on the machine that runs the model. Stop with Ctrl-C.")
            child.wait()
            late = None
            with contextlib.suppress(queue.Empty):
                while (item := messages.get(timeout=1.0)) is not None:
                    late = item
            reason = (late or {}).get("message") or f"exit code {child.returncode}"
            raise TokenometerError(f"The RPC server stopped: {reason}")
        except KeyboardInterrupt:
            _stop(child)
            _say("RPC server stopped.")
            return 0
        finally:
            _stop(child)


def _rpc_probe(args: argparse.Namespace) -> int:
    endpoints = parse_endpoints(args.endpoints)
    if not endpoints:
        raise TokenometerError("No RPC server given; write HOST:PORT[,HOST:PORT].")
    results: list[dict[str, Any]] = []
    failed = 0
    for endpoint in endpoints:
        try:
            found = probe_endpoint(endpoint, timeout=args.timeout)
            results.append({"ok": True, **found.to_json()})
        except RpcError as error:
            failed += 1
            results.append({"ok": False, "endpoint": str(endpoint), "error": str(error)})
    if args.json:
        print(json.dumps(results, indent=2))
        return 1 if failed else 0
    for row in results:
        if not row["ok"]:
            print(f"{row['endpoint']}  unreachable: {printable(row['error'])}")
            continue
        print(f"{row['endpoint']}  RPC v{row['version']}, round trip {row['rtt_ms']:.3f} ms, "
              f"upload {row['upload_mb_s']:.0f} MB/s, download {row['download_mb_s']:.0f} MB/s"
              + (f" ({row['note']})" if row["note"] else ""))
        for dev in row["devices"]:
            print(f"  device {dev['index']}: {fmt_bytes(dev['memory_free'])} free of {fmt_bytes(dev['memory_total'])}")
    return 1 if failed else 0


def fit_pool(header: Any, where: str, hardware: Any, args: argparse.Namespace) -> int:
    """tokenometer fit MODEL --rpc ...: the model across this machine and the servers' devices (llama.cpp's split)."""
    from models.fit.pool import estimate_pool

    endpoints = parse_endpoints(args.rpc)
    if not endpoints:
        raise TokenometerError("--rpc names no server; write HOST:PORT[,HOST:PORT].")
    devices: list[tuple[str, int]] = []
    for endpoint in endpoints:  # llama.cpp puts RPC devices first, numbered in the order they were added
        found = probe_endpoint(endpoint, transfer_bytes=0, rtt_rounds=1)
        devices += [(f"RPC{len(devices)}", dev.memory_free) for dev in found.devices]
    build = hardware.llama
    if build is not None and not build.error:
        devices += [(str(dev.get("name")), int(dev.get("memory_free") or 0)) for dev in build.gpu_devices]
    n_ctx = args.ctx or min(header.context_length or 4096, 4096)
    estimate = estimate_pool(header, devices, host_free=hardware.ram_available, n_ctx=n_ctx,
                             n_gpu_layers=-1 if args.ngl is None else args.ngl, type_k=args.type_k,
                             type_v=args.type_v, n_batch=args.n_batch, n_ubatch=args.n_ubatch,
                             flash_attn=args.flash_attn, cpu_flags=hardware.cpu.flags)
    if args.json:
        print(json.dumps({"model": where, "rpc": [str(e) for e in endpoints], "pool": estimate.to_json()}, indent=2))
        return 0
    print(f"Model      {printable(header.name or where)}, {header.block_count} layers, pool {args.rpc}")
    for dev in estimate.devices:
        layers = f"{len([il for il in dev.layers if il < header.block_count])} layers" + \
            (" + output" if header.block_count in dev.layers else "")
        print(f"  {dev.name:<8} {layers:<18} weights {fmt_bytes(dev.weights)}, KV {fmt_bytes(dev.kv)}, "
              f"compute {fmt_bytes(dev.compute)}, output {fmt_bytes(dev.output)} = {fmt_bytes(dev.total)} "
              f"of {fmt_bytes(max(dev.memory_free - dev.reserve, 0))} usable{'' if dev.fits else ': SHORT'}")
    print(f"Verdict    {estimate.summary}")
    for note in estimate.notes:
        print(f"note       {note}")
    return 0 if estimate.fits else 1
