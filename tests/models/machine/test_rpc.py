"""llama.cpp's RPC backend: endpoints, the probe, tokenometer rpc-server, and bench --rpc against real servers on
127.0.0.1 started through the same command; faults end as failed runs with a reason, never a hang."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from models.machine.rpc import (MAX_SERVERS, Endpoint, RpcError, parse_endpoint, parse_endpoints, probe_endpoint,
                                protocol_version)
from models.machine.rpc_attach import abort_reason, llama_bench_backends

ROOT = Path(__file__).resolve().parents[3]


# -- helpers --

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@functools.lru_cache(maxsize=1)
def _build_has_rpc() -> bool:
    from models.machine.hardware import llama_build

    return llama_build().supports_rpc


def _require_rpc() -> None:
    """The core tests need the RPC backend; in a build without it they fail with how to get it, never skip."""
    if not _build_has_rpc():
        pytest.fail("this llama.cpp build has no RPC backend: rebuild with python3 dev.py install (it builds "
                    'llama-cpp-python with CMAKE_ARGS="-DGGML_RPC=on")', pytrace=False)


def _cli(*args: str, timeout: float = 240, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "models.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


class Server:
    """`tokenometer rpc-server` in a child process, ready once it printed its Ready line."""

    def __init__(self, *args: str) -> None:
        self.port = _free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "models.cli", "rpc-server", "--port", str(self.port),
                                      "--threads", "1", *args], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.err: list[str] = []
        self._ready = threading.Event()
        self._readers = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            # ggml's server shares the pipe and may write "Client connection closed" just before it, no newline yet
            if "Ready: use it with" in line:
                self._ready.set()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.2):
            assert self.proc.poll() is None, f"rpc-server exited {self.proc.returncode}: {self.lines} {self.err}"
            assert time.monotonic() < deadline, f"rpc-server not ready: {self.lines} {self.err}"

    def serving_child(self) -> psutil.Process:
        kids = psutil.Process(self.proc.pid).children()
        assert len(kids) == 1, kids
        return kids[0]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the command and wait for it; its output is then read to the end."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(30)
        for reader in self._readers:
            reader.join(10)
        return code


@contextlib.contextmanager
def servers(count: int) -> Iterator[list[Server]]:
    _require_rpc()
    started = [Server() for _ in range(count)]
    try:
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            with contextlib.suppress(Exception):
                server.stop()
            if server.proc.poll() is None:
                server.proc.kill()


def _bench_json(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> tuple[int, list[dict], str]:
    done = _cli("bench", *args, "-o", "json", timeout=timeout, env=env)
    rows = json.loads(done.stdout) if done.stdout.strip() else []
    return done.returncode, rows, done.stderr


# -- endpoints (no server needed) --

def test_endpoints_parse_like_llama_bench() -> None:
    assert parse_endpoints("127.0.0.1:50052,box.lan:50053") == (Endpoint("127.0.0.1", 50052),
                                                                 Endpoint("box.lan", 50053))
    assert parse_endpoints("") == () and parse_endpoints("none") == ()
    assert parse_endpoint(" 10.0.0.2:1 ").is_loopback is False and parse_endpoint("127.0.0.1:1").is_loopback


@pytest.mark.parametrize(("text", "reason"), [
    ("10.0.0.2", "has no port; write HOST:PORT, e.g. 10.0.0.2:50052"),
    ("10.0.0.2:0", "the port must be a number from 1 to 65535"),
    ("10.0.0.2:http", "the port must be a number from 1 to 65535"),
    ("[::1]:50052", "IPv6 addresses are not supported"),
    ("fe80::1:50052", "IPv6 addresses are not supported"),
    (":50052", "is not a host name or IPv4 address"),
    ("a b:50052", "is not a host name or IPv4 address"),
    ("127.0.0.1:5,127.0.0.1:5", "names the same endpoint twice"),
    (",".join(f"127.0.0.1:{p}" for p in range(1, MAX_SERVERS + 2)), "llama.cpp takes at most 16"),
    ("127.0.0.1:5,", "An RPC endpoint is empty"),
])
def test_bad_endpoints_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(RpcError, match=None) as error:
        parse_endpoints(text)
    assert reason in str(error.value)


def test_protocol_version_is_read_from_the_installed_header(tmp_path: Path) -> None:
    (tmp_path / "ggml-rpc.h").write_text("#define RPC_PROTO_MAJOR_VERSION    9\n#define RPC_PROTO_MINOR_VERSION 4\n")
    assert protocol_version(include_dirs=[tmp_path]) == (9, 4)
    assert protocol_version(include_dirs=[tmp_path / "none"]) == (7, 0)  # the vendored llama.cpp's


def test_llama_bench_backends_name() -> None:
    assert llama_bench_backends("CPU") == "RPC"
    assert llama_bench_backends("CUDA") == "CUDA,RPC"


# -- the probe against servers that are not RPC servers (no llama.cpp needed) --

def test_probe_of_a_port_nobody_listens_on() -> None:
    port = _free_port()
    started = time.monotonic()
    with pytest.raises(RpcError) as error:
        probe_endpoint(f"127.0.0.1:{port}")
    assert f"127.0.0.1:{port}: nothing is listening there (connection refused)" in str(error.value)
    assert time.monotonic() - started < 5


@contextlib.contextmanager
def http_server() -> Iterator[int]:
    """A real plain HTTP server (Python's) in a child process."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            assert time.monotonic() < deadline, "http.server did not start"
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_probe_of_a_plain_http_server_times_out_with_the_reason() -> None:
    with http_server() as port:
        started = time.monotonic()
        with pytest.raises(RpcError) as error:
            probe_endpoint(f"127.0.0.1:{port}", timeout=1.5)
        assert time.monotonic() - started < 10
    assert "no answer to the handshake within 1.5 s. It is not a llama.cpp RPC server" in str(error.value)


@contextlib.contextmanager
def scripted_server(answer: bytes) -> Iterator[int]:
    """A TCP server that reads the client's first command and answers `answer` bytes: the only way to stand for a
    server of another protocol version, or one that replies garbage, with one llama.cpp build here."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(1 + 8 + 24)
                conn.sendall(answer)
                conn.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()
        thread.join(5)


def test_probe_refuses_another_protocol_version() -> None:
    hello_v6 = struct.pack("<Q", 28) + bytes([6, 1, 0, 0]) + bytes(24)
    with scripted_server(hello_v6) as port:
        with pytest.raises(RpcError) as error:
            probe_endpoint(f"127.0.0.1:{port}")
    assert "speaks RPC protocol v6.1.0; this llama.cpp build speaks v7.0.x" in str(error.value)


def test_probe_names_an_http_reply() -> None:
    with scripted_server(b"HTTP/1.0 400 Bad Request\r\n\r\n") as port:
        with pytest.raises(RpcError) as error:
            probe_endpoint(f"127.0.0.1:{port}")
    assert "is not llama.cpp's RPC protocol (it begins with 'HTTP/1.0')" in str(error.value)
    assert "It looks like an HTTP server" in str(error.value)


def test_abort_reason_names_the_lost_server() -> None:
    port = _free_port()
    reason = abort_reason("ggml-rpc.cpp:35: GGML_ABORT Remote RPC server crashed or returned malformed response",
                          (Endpoint("127.0.0.1", port),), 300)
    assert reason is not None and f"Lost the RPC server 127.0.0.1:{port}: nothing listens there" in reason
    assert abort_reason("ggml.c:1: GGML_ASSERT(x) failed", (Endpoint("127.0.0.1", port),), 300) is None


# -- tokenometer rpc-server --

def test_rpc_server_serves_reports_and_stops_on_ctrl_c() -> None:
    with servers(1) as (server,):
        child = server.serving_child()
        text = "\n".join(server.lines)
        assert f"Serving on {server.endpoint} with 1 CPU threads:" in text
        assert "  CPU (CPU): " in text and " free of " in text
        probe = _cli("rpc-probe", server.endpoint, "--json")
        assert probe.returncode == 0, probe.stderr
        (row,) = json.loads(probe.stdout)
        assert row["ok"] and row["version"].startswith("7.")
        assert row["devices"][0]["memory_total"] > 0 and row["rtt_ms"] > 0
        assert row["upload_mb_s"] > 0 and row["download_mb_s"] > 0 and row["transfer_bytes"] == 4 << 20
        assert server.stop(signal.SIGINT) == 0  # Ctrl-C
        assert "RPC server stopped." in server.lines
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    with socket.socket() as sock:  # the port is free again
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", server.port))


def test_rpc_server_off_loopback_warns_and_sigterm_stops_it() -> None:
    _require_rpc()
    server = Server("--host", "0.0.0.0")
    try:
        server.wait_ready()
        assert server.stop(signal.SIGTERM) == 0
        assert any("WARNING: 0.0.0.0:" in line and "anyone who can reach this port can run code" in line
                   for line in server.err)
        assert "RPC server stopped." in server.lines
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


def test_rpc_server_refuses_a_taken_port_and_an_unknown_device() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _cli("rpc-server", "--port", str(port), timeout=60)
    assert done.returncode == 1 and f"Cannot listen on 127.0.0.1:{port}" in done.stderr
    _require_rpc()
    done = _cli("rpc-server", "--port", str(_free_port()), "--device", "NOPE0", timeout=120)
    assert done.returncode == 1
    assert "unknown device 'NOPE0'; this build has: CPU (" in done.stderr


# -- bench --rpc --

@pytest.mark.slow
def test_bench_splits_the_model_across_two_servers_and_the_cpu(starter_model: Path) -> None:
    with servers(2) as (one, two):
        pool = f"{one.endpoint},{two.endpoint}"
        code, rows, err = _bench_json(str(starter_model), "-p", "16", "-n", "4", "-r", "2", "-t", "1", "-ngl", "20",
                                      "--rpc", pool, "--rpc", one.endpoint)
    assert code == 0, err
    assert [(r["rpc"], r["test"]) for r in rows] == [(pool, "pp16"), (pool, "tg4"), (one.endpoint, "pp16"),
                                                     (one.endpoint, "tg4")]
    for row in rows:
        assert row["status"] == "ok" and row["avg_ts"] > 0 and row["backends"] == "RPC"
        assert row["n_gpu_layers"] == 20
    both, single = rows[0], rows[2]
    # llama.cpp's own buffer log (device 0 of each server): weights and KV on each server and on the CPU (the 11
    # layers not offloaded), and they agree with the pool estimate for these devices.
    devices = {key.rsplit(":", 1)[0] for key in both["buffers"] if key.endswith(":model")}
    assert devices == {f"RPC0[{one.endpoint}]", f"RPC0[{two.endpoint}]", "CPU_Mapped"}, both["buffers"]
    assert {key.rsplit(":", 1)[0] for key in single["buffers"] if key.endswith(":model")} == {
        f"RPC0[{one.endpoint}]", "CPU_Mapped"}, single["buffers"]
    from models.fit.pool import estimate_pool
    from models.gguf.split import read_model_header

    free = [d["devices"][0]["memory_free"] for d in both["topology"]["endpoints"]]
    pool = estimate_pool(read_model_header(starter_model), [("RPC0", free[0]), ("RPC1", free[1])],
                         host_free=1 << 40, n_ctx=16, n_gpu_layers=20)
    for estimated, logged in zip(pool.devices[1:], (one.endpoint, two.endpoint)):
        assert estimated.weights == pytest.approx(both["buffers"][f"RPC0[{logged}]:model"], rel=0.01)
        assert estimated.kv == pytest.approx(both["buffers"][f"RPC0[{logged}]:KV"], rel=0.01)
    topology = both["topology"]
    assert [e["endpoint"] for e in topology["endpoints"]] == [one.endpoint, two.endpoint]
    for index, endpoint in enumerate(topology["endpoints"]):
        assert endpoint["version"].startswith("7.") and endpoint["rtt_ms"] > 0
        assert endpoint["upload_mb_s"] > 0 and endpoint["download_mb_s"] > 0
        (device,) = endpoint["devices"]
        assert device["name"] == f"RPC{index}" and device["memory_total"] >= device["memory_free"] > 0
    assert any(dev["type"] == "CPU" for dev in topology["local_devices"])


@pytest.mark.slow
def test_bench_against_nothing_listening_fails_at_once(starter_model: Path) -> None:
    _require_rpc()
    port = _free_port()
    started = time.monotonic()
    code, rows, err = _bench_json(str(starter_model), "-p", "16", "-n", "0", "-r", "1", "--rpc",
                                  f"127.0.0.1:{port}", timeout=120)
    assert code == 1 and rows and all(r["status"] == "failed" for r in rows)
    assert f"RPC server 127.0.0.1:{port}: nothing is listening there (connection refused)" in rows[0]["error"]
    assert time.monotonic() - started < 100


@pytest.mark.slow
def test_bench_against_a_plain_http_server_fails_with_the_reason(starter_model: Path) -> None:
    _require_rpc()
    with http_server() as port:
        code, rows, err = _bench_json(str(starter_model), "-p", "16", "-n", "0", "-r", "1", "--rpc",
                                      f"127.0.0.1:{port}", timeout=120)
    assert code == 1 and rows and rows[0]["status"] == "failed"
    assert f"RPC server 127.0.0.1:{port}: no answer to the handshake within 5 s" in rows[0]["error"]


def _bench_until_timed(starter_model: Path, endpoint: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A bench long enough to be cut in the middle: progress on stderr says when the timed repetitions began."""
    return subprocess.Popen([sys.executable, "-m", "models.cli", "bench", str(starter_model), "-p", "0", "-n", "32",
                             "-r", "50", "-t", "1", "--rpc", endpoint, "--progress", "-o", "json"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_rep(proc: subprocess.Popen) -> list[str]:
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "rep 2/" in line:
            return seen
    raise AssertionError(f"bench ended before its timed repetitions: {''.join(seen)}")


@pytest.mark.slow
def test_server_killed_mid_run_is_a_failed_run_naming_it(starter_model: Path) -> None:
    with servers(1) as (server,):
        bench = _bench_until_timed(starter_model, server.endpoint)
        try:
            _wait_for_rep(bench)
            server.serving_child().kill()
            out, err = bench.communicate(timeout=120)
        finally:
            if bench.poll() is None:
                bench.kill()
        assert server.proc.wait(30) == 1  # the supervising command noticed its server died
    assert bench.returncode == 1
    rows = json.loads(out)
    assert rows[0]["status"] == "failed"
    assert f"Lost the RPC server {server.endpoint}: nothing listens there any more" in rows[0]["error"]


@pytest.mark.slow
def test_server_that_stops_answering_times_out(starter_model: Path) -> None:
    env = {**os.environ, "TOKENOMETER_RPC_TIMEOUT": "3"}
    with servers(1) as (server,):
        bench = _bench_until_timed(starter_model, server.endpoint, env)
        child = server.serving_child()
        try:
            _wait_for_rep(bench)
            child.suspend()  # SIGSTOP: the connection stays open, nothing answers
            out, err = bench.communicate(timeout=120)
        finally:
            child.resume()
            if bench.poll() is None:
                bench.kill()
    assert bench.returncode == 1
    rows = json.loads(out)
    assert rows[0]["status"] == "failed"
    assert f"An RPC server ({server.endpoint}) stopped answering: no answer within 3 s" in rows[0]["error"]


def test_fit_for_a_pool_asks_the_servers(starter_model: Path) -> None:
    with servers(1) as (server,):
        done = _cli("fit", str(starter_model), "--rpc", server.endpoint, "--ngl", "20", "--ctx", "512", "--json",
                    timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    cpu, rpc0 = answer["pool"]["devices"]
    assert answer["rpc"] == [server.endpoint] and answer["pool"]["fits"]
    assert rpc0["name"] == "RPC0" and rpc0["memory_free"] > 0 and rpc0["layers"] == list(range(11, 31))
    assert cpu["layers"] == list(range(11)) and rpc0["weights"] > 0 and rpc0["kv"] > 0
    port = _free_port()
    refused = _cli("fit", str(starter_model), "--rpc", f"127.0.0.1:{port}", timeout=60)
    assert refused.returncode == 1 and f"127.0.0.1:{port}: nothing is listening there" in refused.stderr


def test_probe_refuses_an_old_three_byte_handshake() -> None:
    hello_v3 = struct.pack("<Q", 3) + bytes([3, 0, 0])  # an older release: major, minor, patch only
    with scripted_server(hello_v3) as port:
        with pytest.raises(RpcError) as error:
            probe_endpoint(f"127.0.0.1:{port}")
    assert "speaks RPC protocol v3.0.0; this llama.cpp build speaks v7.0.x" in str(error.value)


def test_arming_sockets_leaks_no_descriptor() -> None:
    from models.machine.rpc_attach import arm_sockets

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    try:
        before = psutil.Process().num_fds()
        for _ in range(50):
            assert arm_sockets({listener.getsockname()}, 2.5) == 1
        assert psutil.Process().num_fds() == before
        assert client.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16) == struct.pack("ll", 2, 500000)
        client.sendall(b"still open")
    finally:
        client.close()
        listener.close()


def _dev_module():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("tokenometer_dev", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dev_install_builds_with_rpc_beside_the_users_backend() -> None:
    dev = _dev_module()
    assert dev.llama_cmake_args("") == "-DGGML_RPC=on"
    assert dev.llama_cmake_args("-DGGML_CUDA=on") == "-DGGML_CUDA=on -DGGML_RPC=on"
    assert dev.llama_cmake_args("-DGGML_VULKAN=on -DGGML_RPC=off") == "-DGGML_VULKAN=on -DGGML_RPC=off"


def test_hardware_says_the_build_has_rpc() -> None:
    _require_rpc()
    done = _cli("hardware", "--no-bandwidth", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "RPC        yes: this build can serve devices" in done.stdout
    assert "RPC" in json.loads(_cli("hardware", "--json", "--no-bandwidth", timeout=120).stdout)["llama"]["backends"]
