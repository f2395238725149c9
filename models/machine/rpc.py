"""llama.cpp's RPC backend seen from here: endpoints, and a short probe of a server (handshake, devices, RTT, bandwidth)."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import statistics
import struct
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.errors import TokenometerError

log = logging.getLogger(__name__)

DEFAULT_PORT = 50052  # rpc-server's
MAX_SERVERS = 16  # GGML_RPC_MAX_SERVERS
# ggml-rpc.h's RPC_PROTO_MAJOR_VERSION in the vendored llama.cpp; the installed header is read when it is there.
PROTOCOL_MAJOR = 7
PROTOCOL_MINOR = 0
PROBE_TIMEOUT_S = 5.0  # every wait of the probe: connect, handshake, each answer
RUN_TIMEOUT_ENV = "TOKENOMETER_RPC_TIMEOUT"  # seconds a worker waits for one answer from a server during a run
DEFAULT_RUN_TIMEOUT_S = 300.0
REBUILD_HINT = ('this llama.cpp build has no RPC backend: rebuild it with python3 dev.py install '
                '(it builds llama-cpp-python with CMAKE_ARGS="-DGGML_RPC=on")')

# ggml-rpc.cpp's wire format (protocol v7): a command is | cmd u8 | size u64 | payload |, an answer | size u64 | data |.
_CMD_ALLOC_BUFFER, _CMD_BUFFER_GET_BASE, _CMD_FREE_BUFFER = 0, 3, 4
_CMD_SET_TENSOR, _CMD_GET_TENSOR, _CMD_GET_DEVICE_MEMORY = 6, 8, 11
_CMD_HELLO, _CMD_DEVICE_COUNT = 14, 15
_CONN_CAPS = 24  # RPC_CONN_CAPS_SIZE: all zero = plain TCP, no RDMA
# rpc_tensor: id, type, buffer, ne[4], nb[4], op, op_params[16], flags, src[10], view_src, view_offs, data, name,
# use_count (packed, 296 bytes)
_TENSOR = struct.Struct("<QIQ4I4II16ii10QQQQ64si")
_GGML_TYPE_F32 = 0
_MAX_ANSWER = 1 << 30  # an answer announced larger than this is not the protocol talking


class RpcError(TokenometerError):
    """An RPC endpoint is malformed, unreachable, not an RPC server, or speaks another protocol version."""


@dataclass(frozen=True)
class Endpoint:
    """host:port of one rpc-server, as ggml's client takes it (an IPv4 address or a name resolved to one)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


def parse_endpoint(text: str) -> Endpoint:
    """HOST:PORT as llama-bench's -rpc takes one; anything ggml would abort on is refused here with the reason."""
    value = text.strip()
    if not value:
        raise RpcError("An RPC endpoint is empty; write HOST:PORT, e.g. 192.168.1.20:50052.")
    if value.startswith("[") or value.count(":") > 1:
        raise RpcError(f"RPC endpoint {value!r}: IPv6 addresses are not supported by llama.cpp's RPC client; "
                       "use an IPv4 address or a host name.")
    host, sep, port_text = value.partition(":")
    if not sep:
        raise RpcError(f"RPC endpoint {value!r} has no port; write HOST:PORT, e.g. {value}:{DEFAULT_PORT}.")
    if not host or not re.fullmatch(r"[A-Za-z0-9._-]+", host):
        raise RpcError(f"RPC endpoint {value!r}: {host!r} is not a host name or IPv4 address.")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise RpcError(f"RPC endpoint {value!r}: the port must be a number from 1 to 65535.")
    return Endpoint(host, int(port_text))


def parse_endpoints(text: str) -> tuple[Endpoint, ...]:
    """A comma-separated list (llama-bench's -rpc); "" or "none" is no server. Duplicates are refused."""
    value = text.strip()
    if value.lower() in ("", "none"):
        return ()
    endpoints = tuple(parse_endpoint(part) for part in value.split(","))
    if len(endpoints) > MAX_SERVERS:
        raise RpcError(f"{len(endpoints)} RPC servers given; llama.cpp takes at most {MAX_SERVERS}.")
    seen = {str(e) for e in endpoints}
    if len(seen) != len(endpoints):
        raise RpcError(f"RPC server list {value!r} names the same endpoint twice.")
    return endpoints


def check_endpoints(text: str) -> str | None:
    """Why an --rpc value cannot be used, or None."""
    try:
        parse_endpoints(text)
    except RpcError as error:
        return str(error)
    return None


def protocol_version(*, include_dirs: list[Path] | None = None) -> tuple[int, int]:
    """(major, minor) of the RPC protocol this llama.cpp build speaks, from the ggml-rpc.h it installed."""
    folders = include_dirs if include_dirs is not None else [Path(p) / "include" for p in sys.path if p]
    for folder in folders:
        header = folder / "ggml-rpc.h"
        try:
            text = header.read_text(errors="replace") if header.is_file() else ""
        except OSError:
            continue
        major = re.search(r"#define\s+RPC_PROTO_MAJOR_VERSION\s+(\d+)", text)
        minor = re.search(r"#define\s+RPC_PROTO_MINOR_VERSION\s+(\d+)", text)
        if major and minor:
            return int(major.group(1)), int(minor.group(1))
    return PROTOCOL_MAJOR, PROTOCOL_MINOR


def run_timeout() -> float:
    """Seconds a worker waits for one answer from an RPC server before the run fails ($TOKENOMETER_RPC_TIMEOUT)."""
    text = os.environ.get(RUN_TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_RUN_TIMEOUT_S
    except ValueError:
        value = DEFAULT_RUN_TIMEOUT_S
    return value if value > 0 else DEFAULT_RUN_TIMEOUT_S


@dataclass
class RemoteDevice:
    """One device an RPC server offers, as it reports it."""

    index: int
    memory_free: int
    memory_total: int
    name: str = ""  # the name llama.cpp gives it on the client (RPC0, RPC1, ...), once registered


@dataclass
class EndpointProbe:
    """What one server answered: its protocol version, devices, and the link's round trip and bandwidth."""

    endpoint: str
    version: str = ""
    devices: list[RemoteDevice] = field(default_factory=list)
    connect_ms: float = 0.0
    rtt_ms: float = 0.0  # median of small request/answer round trips
    rtt_samples_ms: list[float] = field(default_factory=list)
    upload_mb_s: float = 0.0  # MB/s (10^6 bytes) written into a buffer on the server, median of the transfers
    download_mb_s: float = 0.0
    transfer_bytes: int = 0  # size of each timed transfer (0: bandwidth not measured)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Link:
    """One TCP connection speaking ggml's RPC protocol, every wait bounded by `timeout`."""

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        started = time.perf_counter()
        try:
            self.sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        except socket.gaierror as error:
            raise RpcError(f"RPC server {endpoint}: the host name cannot be resolved ({error.strerror}).") from error
        except ConnectionRefusedError as error:
            raise RpcError(f"RPC server {endpoint}: nothing is listening there (connection refused). Start "
                           f"`tokenometer rpc-server --host {endpoint.host} --port {endpoint.port}` (or llama.cpp's "
                           "rpc-server) on that machine.") from error
        except (socket.timeout, TimeoutError) as error:
            raise RpcError(f"RPC server {endpoint}: no answer to the connection within {timeout:g} s (host down, "
                           "wrong address, or a firewall dropping the port).") from error
        except OSError as error:
            raise RpcError(f"RPC server {endpoint}: cannot connect ({error.strerror or error}).") from error
        self.connect_ms = (time.perf_counter() - started) * 1000
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as ggml's client: no Nagle delay

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, cmd: int, payload: bytes = b"") -> None:
        try:
            self.sock.sendall(struct.pack("<BQ", cmd, len(payload)) + payload)
        except (socket.timeout, TimeoutError) as error:
            raise RpcError(f"RPC server {self.endpoint}: it stopped taking data (no progress in "
                           f"{self.timeout:g} s).") from error
        except OSError as error:
            raise RpcError(f"RPC server {self.endpoint}: the connection broke while sending "
                           f"({error.strerror or error}).") from error

    def _exact(self, size: int, what: str) -> bytes:
        chunks, got = [], 0
        while got < size:
            try:
                chunk = self.sock.recv(min(size - got, 1 << 20))
            except (socket.timeout, TimeoutError) as error:
                raise RpcError(f"RPC server {self.endpoint}: no answer {what} within {self.timeout:g} s. It is not a "
                               "llama.cpp RPC server, or it is busy serving another client (an RPC server serves "
                               "one client at a time).") from error
            except OSError as error:
                raise RpcError(f"RPC server {self.endpoint}: the connection broke {what} "
                               f"({error.strerror or error}).") from error
            if not chunk:
                raise RpcError(f"RPC server {self.endpoint}: it closed the connection {what}. It is not a llama.cpp "
                               "RPC server, or one of another version (each side needs the same llama.cpp "
                               "release).")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def answer(self, size: int | None, what: str, *, limit: int = _MAX_ANSWER) -> bytes:
        head = self._exact(8, what)
        announced = struct.unpack("<Q", head)[0]
        if (size is not None and announced != size) or announced > limit:
            shown = head.decode("ascii", "replace") if all(32 <= b < 127 for b in head) else head.hex()
            looks = " It looks like an HTTP server." if head.startswith(b"HTTP/") else ""
            raise RpcError(f"RPC server {self.endpoint}: the answer {what} is not llama.cpp's RPC protocol (it begins "
                           f"with {shown!r}).{looks}")
        return self._exact(announced, what)

    def call(self, cmd: int, payload: bytes, size: int | None, what: str) -> bytes:
        self.send(cmd, payload)
        return self.answer(size, what)


def _tensor(buffer: int, data: int, size: int) -> bytes:
    """An rpc_tensor describing `size` bytes of f32 at `data` in a server buffer."""
    return _TENSOR.pack(1, _GGML_TYPE_F32, buffer, size // 4, 1, 1, 1, 4, size, size, size, 0, *([0] * 16), 0,
                        *([0] * 10), 0, 0, data, b"tokenometer_probe", 0)


def _bandwidth(link: _Link, result: EndpointProbe, transfer_bytes: int, rounds: int) -> None:
    """Time writes into and reads from a scratch buffer on the server's first device, then free it."""
    buf_ptr, buf_size = struct.unpack("<QQ", link.call(_CMD_ALLOC_BUFFER, struct.pack("<IQ", 0, transfer_bytes), 16,
                                                       "to a buffer allocation"))
    if buf_ptr == 0 or buf_size < transfer_bytes:
        result.note = f"bandwidth not measured: the server could not allocate {transfer_bytes} bytes"
        return
    try:
        base = struct.unpack("<Q", link.call(_CMD_BUFFER_GET_BASE, struct.pack("<Q", buf_ptr), 8,
                                             "to a buffer query"))[0]
        tensor = _tensor(buf_ptr, base, transfer_bytes)
        payload = tensor + b"\0" + struct.pack("<Q", 0) + os.urandom(transfer_bytes)  # no cache flag, offset 0
        up, down = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            link.send(_CMD_SET_TENSOR, payload)  # no answer: the device count after it marks the write as done
            link.call(_CMD_DEVICE_COUNT, b"", 4, "after a write")
            up.append(time.perf_counter() - started)
            started = time.perf_counter()
            link.call(_CMD_GET_TENSOR, tensor + struct.pack("<QQ", 0, transfer_bytes), transfer_bytes, "to a read")
            down.append(time.perf_counter() - started)
        result.transfer_bytes = transfer_bytes
        result.upload_mb_s = round(transfer_bytes / statistics.median(up) / 1e6, 1)
        result.download_mb_s = round(transfer_bytes / statistics.median(down) / 1e6, 1)
    finally:
        link.send(_CMD_FREE_BUFFER, struct.pack("<Q", buf_ptr))
        link.call(_CMD_DEVICE_COUNT, b"", 4, "after freeing the probe buffer")


def probe_endpoint(endpoint: Endpoint | str, *, timeout: float = PROBE_TIMEOUT_S, rtt_rounds: int = 10,
                   transfer_bytes: int = 4 << 20, transfer_rounds: int = 3) -> EndpointProbe:
    """Handshake with a server as ggml's client does, then ask its devices and time the link; RpcError with the
    reason when it is not listening, not an RPC server, or speaks another protocol version. transfer_bytes 0 skips
    the bandwidth part. The connection is closed before returning (a server serves one client at a time)."""
    target = parse_endpoint(endpoint) if isinstance(endpoint, str) else endpoint
    link = _Link(target, timeout)
    result = EndpointProbe(endpoint=str(target), connect_ms=round(link.connect_ms, 3))
    try:
        link.send(_CMD_HELLO, bytes(_CONN_CAPS))
        # Every release answers with major, minor, patch first; what follows changed between releases.
        hello = link.answer(None, "to the handshake", limit=64)
        if len(hello) < 3:
            raise RpcError(f"RPC server {target}: its handshake answer ({len(hello)} bytes) is not llama.cpp's RPC "
                           "protocol.")
        major, minor, patch = hello[0], hello[1], hello[2]
        result.version = f"{major}.{minor}.{patch}"
        ours = protocol_version()
        if major != ours[0] or minor > ours[1] or len(hello) != 4 + _CONN_CAPS:
            raise RpcError(f"RPC server {target} speaks RPC protocol v{result.version}; this llama.cpp build speaks "
                           f"v{ours[0]}.{ours[1]}.x. Install the same llama.cpp release on both machines.")
        for _ in range(max(1, rtt_rounds)):
            started = time.perf_counter()
            count = struct.unpack("<I", link.call(_CMD_DEVICE_COUNT, b"", 4, "to a device count"))[0]
            result.rtt_samples_ms.append(round((time.perf_counter() - started) * 1000, 4))
        result.rtt_ms = round(statistics.median(result.rtt_samples_ms), 4)
        if count == 0:
            raise RpcError(f"RPC server {target} offers no device.")
        for index in range(count):
            free, total = struct.unpack("<QQ", link.call(_CMD_GET_DEVICE_MEMORY, struct.pack("<I", index), 16,
                                                         "to a memory query"))
            result.devices.append(RemoteDevice(index=index, memory_free=free, memory_total=total))
        if transfer_bytes >= 4:
            _bandwidth(link, result, transfer_bytes - transfer_bytes % 4, max(1, transfer_rounds))
    finally:
        link.close()
    return result

