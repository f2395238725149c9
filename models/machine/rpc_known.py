"""The RPC servers configured in the app: each one checked (reachable, devices, memory), the last answers kept on disk,
and the fit of a model across this machine and their devices from those answers (no server asked per model)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.machine.rpc import PROBE_TIMEOUT_S, EndpointProbe, RemoteDevice, RpcError, parse_endpoint, probe_endpoint
from models.units import fmt_bytes

if TYPE_CHECKING:
    from models.fit.pool import PoolEstimate
    from models.gguf.reader import GGUFHeader
    from models.machine.hardware import HardwareInfo

log = logging.getLogger(__name__)

CHECKS_FILE = "rpc_checks.json"
MAX_CHECKS_BYTES = 1 << 20  # a few hundred bytes per server; anything larger is not ours
NO_AUTH_WARNING = ("llama.cpp's RPC protocol has no authentication and no encryption: anyone who can reach a "
                   "server's port can run code on that machine's backend and read what it holds. Run rpc-server "
                   "only on a network you trust.")


@dataclass
class EndpointCheck:
    """What one configured server answered when it was last checked."""

    endpoint: str
    reachable: bool
    checked_at: float  # Unix time of the check
    probe: EndpointProbe | None = None
    error: str = ""  # why it is not reachable, in words

    @property
    def devices(self) -> list[RemoteDevice]:
        return self.probe.devices if self.probe is not None else []

    @property
    def memory_free(self) -> int:
        return sum(d.memory_free for d in self.devices)

    @property
    def memory_total(self) -> int:
        return sum(d.memory_total for d in self.devices)

    def memory_text(self) -> str:
        """"23.5 GiB free of 23.5 GiB" (each device when the server offers several), or ""."""
        return "; ".join(f"{'' if len(self.devices) == 1 else f'device {d.index}: '}{fmt_bytes(d.memory_free)} free "
                         f"of {fmt_bytes(d.memory_total)}" for d in self.devices)

    def to_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "reachable": self.reachable, "checked_at": self.checked_at,
                "probe": self.probe.to_json() if self.probe is not None else None, "error": self.error}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EndpointCheck:
        probe = data.get("probe")
        found = None
        if isinstance(probe, dict):
            devices = [RemoteDevice(**d) for d in probe.get("devices", [])]
            found = EndpointProbe(**{**probe, "devices": devices})
        return cls(endpoint=str(data["endpoint"]), reachable=bool(data["reachable"]),
                   checked_at=float(data["checked_at"]), probe=found, error=str(data.get("error", "")))


def check_endpoint(endpoint: str, *, timeout: float = PROBE_TIMEOUT_S) -> EndpointCheck:
    """Probe one server (handshake, devices, memory, round trip, bandwidth); never raises for a server that is down
    or is not an RPC server: the check says why. Every wait is bounded by `timeout`."""
    started = time.time()
    try:
        probe = probe_endpoint(endpoint, timeout=timeout, transfer_bytes=1 << 20, transfer_rounds=2)
    except RpcError as error:
        return EndpointCheck(endpoint=endpoint, reachable=False, checked_at=started, error=str(error))
    return EndpointCheck(endpoint=endpoint, reachable=True, checked_at=started, probe=probe)


def check_endpoints(endpoints: Sequence[str], *, timeout: float = PROBE_TIMEOUT_S,
                    path: Path | None = None) -> list[EndpointCheck]:
    """Check every server at once (one slow server does not hold up the others' answers) and keep the answers."""
    if not endpoints:
        return []
    with ThreadPoolExecutor(max_workers=min(len(endpoints), 16), thread_name_prefix="rpc-check") as pool:
        checks = list(pool.map(lambda e: check_endpoint(e, timeout=timeout), endpoints))
    try:
        save_checks(checks, path=path)
    except OSError as error:  # the answers are still shown; only the cache for the fit badge is missing
        log.warning("RPC checks not kept: %s", error)
    return checks


def checks_path() -> Path:
    from models.paths import data_dir

    return data_dir() / CHECKS_FILE


def load_checks(*, path: Path | None = None) -> dict[str, EndpointCheck]:
    """The last check of every server ever checked, by endpoint; an unreadable file is no checks (and a warning)."""
    path = path or checks_path()
    try:
        if not path.is_file():
            return {}
        if path.stat().st_size > MAX_CHECKS_BYTES:
            raise ValueError(f"it is {path.stat().st_size:,} bytes, far too large")
        data = json.loads(path.read_text(encoding="utf-8"))
        return {entry["endpoint"]: EndpointCheck.from_json(entry) for entry in data["checks"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("The RPC checks in %s could not be read (%s); the servers count as not checked.", path, error)
        return {}


def save_checks(checks: Iterable[EndpointCheck], *, path: Path | None = None) -> Path:
    """Keep these answers beside the earlier ones of other servers (written atomically)."""
    from models.files import atomic_write_text

    path = path or checks_path()
    known = load_checks(path=path)
    known.update({check.endpoint: check for check in checks})
    text = json.dumps({"checks": [check.to_json() for check in known.values()]}, indent=1)
    return atomic_write_text(path, text + "\n")


def configured_checks(endpoints: Sequence[str], *, path: Path | None = None) -> list[EndpointCheck | None]:
    """The last check of each configured server, in order; None for one never checked."""
    known = load_checks(path=path)
    return [known.get(endpoint) for endpoint in endpoints]


@dataclass
class PoolFit:
    """A model across this machine and the reachable servers' devices, as llama.cpp would split it."""

    verdict: str  # "pool": every layer on the pool's devices; "pool_partial": some on the CPU; "no_fit"
    badge: str  # "fits across this PC + 2 remote"
    summary: str
    n_remote: int  # servers counted
    n_gpu_layers: int  # the most layers that fit on the devices (-1 when none)
    estimate: PoolEstimate | None
    notes: list[str] = field(default_factory=list)


def pool_fit(header: GGUFHeader, hardware: HardwareInfo, checks: Sequence[EndpointCheck | None],
             endpoints: Sequence[str], *, n_ctx: int | None = None) -> PoolFit | None:
    """The fit for the pool from the servers' memory as last checked (RPC devices first, then the local GPUs, as
    llama.cpp orders them); the most offloaded layers that fit, from all of them down. None when no configured
    server was reachable at its last check."""
    from models.fit.pool import estimate_pool

    notes: list[str] = []
    devices: list[tuple[str, int]] = []
    counted = 0
    for endpoint, check in zip(endpoints, checks):
        if check is None:
            notes.append(f"{endpoint} not counted: never checked (Check it in Settings or on the Hardware page).")
        elif not check.reachable:
            notes.append(f"{endpoint} not counted: not reachable when last checked.")
        else:
            counted += 1
            devices += [(f"RPC{len(devices)}", d.memory_free) for d in check.devices]
            if parse_endpoint(endpoint).is_loopback:
                notes.append(f"{endpoint} runs on this machine: its memory is this machine's, counted again.")
    if not counted:
        return None
    build = hardware.llama
    if build is not None and not build.error:
        devices += [(str(d.get("name")), int(d.get("memory_free") or 0)) for d in build.gpu_devices]
    ctx = n_ctx or min(header.context_length or 4096, 4096)
    n_layer = header.block_count
    where = f"this PC + {counted} remote"
    estimate = None
    chosen = -1
    for ngl in range(n_layer + 1, 0, -1):  # as fit_verdict: the most layers on the devices that still fits
        estimate = estimate_pool(header, devices, host_free=hardware.ram_available, n_ctx=ctx, n_gpu_layers=ngl,
                                 cpu_flags=hardware.cpu.flags)
        if estimate.fits:
            chosen = ngl
            break
    if chosen == n_layer + 1:
        verdict, badge = "pool", f"fits across {where}"
    elif chosen > 0:
        verdict, badge = "pool_partial", f"partial: {where}"
    else:
        estimate = estimate_pool(header, devices, host_free=hardware.ram_available, n_ctx=ctx, n_gpu_layers=-1,
                                 cpu_flags=hardware.cpu.flags)
        verdict, badge = "no_fit", f"won't fit {where}"
    assert estimate is not None
    layers = (f"{chosen} of {n_layer + 1} layers on the devices, the rest on this PC's CPU" if verdict == "pool_partial"
              else "")
    summary = estimate.summary + (f" With {layers}." if layers else "")
    return PoolFit(verdict=verdict, badge=badge, summary=summary, n_remote=counted, n_gpu_layers=chosen,
                   estimate=estimate, notes=notes + estimate.notes)
