"""The configured RPC servers: kept in the settings (bad entries named, the good ones kept), checked against real
servers on 127.0.0.1 (started through `tokenometer rpc-server`), the checks kept, and the pool fit from them."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from models.machine.rpc_known import (EndpointCheck, check_endpoints, configured_checks, load_checks, pool_fit,
                                      save_checks)
from models.settings import Settings, load_settings, save_settings, update_settings
from tests.models.machine.test_rpc import _free_port, servers


def test_settings_keep_the_good_endpoints_and_name_each_bad_one(isolated_home: Path) -> None:
    from models.paths import settings_path

    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text(json.dumps({"version": 1, "rpc_endpoints": [
        " 127.0.0.1:50052", "10.0.0.2", "127.0.0.1:50052", 5, "box.lan:50053"]}))
    loaded = load_settings()
    assert loaded.rpc_endpoints == ("127.0.0.1:50052", "box.lan:50053")
    text = " ".join(loaded.warnings)
    assert "'10.0.0.2' has no port; write HOST:PORT, e.g. 10.0.0.2:50052" in text
    assert "RPC endpoint 127.0.0.1:50052 is listed twice" in text and "entry 5 is not a text" in text
    settings_path().write_text(json.dumps({"version": 1, "rpc_endpoints": "127.0.0.1:50052"}))
    assert load_settings().rpc_endpoints == ()
    assert "must be a list of HOST:PORT texts, not str" in " ".join(load_settings().warnings)


def test_saving_a_bad_endpoint_is_refused_and_writes_nothing(isolated_home: Path) -> None:
    from models.paths import settings_path

    save_settings(Settings(rpc_endpoints=("127.0.0.1:50052",)))
    before = settings_path().read_text()
    with pytest.raises(ValueError, match=r"rpc_endpoints: RPC endpoint '\[::1\]:50052': IPv6 addresses"):
        save_settings(Settings(rpc_endpoints=("[::1]:50052",)))
    with pytest.raises(ValueError, match="rpc_endpoints"):
        update_settings(lambda s: setattr(s, "rpc_endpoints", ("host:99999",)))
    assert settings_path().read_text() == before
    changed = update_settings(lambda s: setattr(s, "hardware_cost", 999.0))
    assert changed.rpc_endpoints == ("127.0.0.1:50052",) and load_settings().hardware_cost == 999.0


def test_checks_of_a_real_server_and_a_closed_port_are_kept(isolated_home: Path) -> None:
    dead = f"127.0.0.1:{_free_port()}"
    with servers(1) as (server,):
        started = time.monotonic()
        alive, down = check_endpoints([server.endpoint, dead])
        assert time.monotonic() - started < 10
    assert alive.reachable and alive.probe is not None and alive.probe.version.startswith("7.")
    assert alive.memory_total >= alive.memory_free > 0 and alive.probe.rtt_ms > 0
    assert alive.probe.transfer_bytes == 1 << 20 and alive.probe.upload_mb_s > 0
    assert "free of" in alive.memory_text()
    assert not down.reachable and "nothing is listening there (connection refused)" in down.error
    kept = load_checks()
    assert set(kept) == {server.endpoint, dead}
    assert kept[server.endpoint].to_json() == alive.to_json() and kept[dead].error == down.error
    assert configured_checks([dead, "127.0.0.1:1"]) == [kept[dead], None]


def test_checks_file_that_is_not_ours_counts_as_none(isolated_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "checks.json"
    path.write_text("{not json")
    assert load_checks(path=path) == {}
    save_checks([EndpointCheck("10.0.0.9:1", reachable=False, checked_at=1.0, error="down")], path=path)
    assert load_checks(path=path)["10.0.0.9:1"].error == "down"


def test_a_server_that_never_answers_is_not_reachable_within_the_timeout(isolated_home: Path) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        endpoint = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        (check,) = check_endpoints([endpoint], timeout=1.0)
        assert time.monotonic() - started < 5
    assert not check.reachable and "no answer to the handshake within 1 s" in check.error


def test_pool_fit_counts_the_servers_memory_as_last_checked(isolated_home: Path, starter_model: Path) -> None:
    from models.gguf.split import read_model_header
    from models.machine.hardware import probe_hardware

    header = read_model_header(starter_model)
    hardware = probe_hardware()
    with servers(2) as (one, two):
        checks = check_endpoints([one.endpoint, two.endpoint])
    # The servers are gone: the fit uses what they answered, and asks nobody.
    never = f"127.0.0.1:{_free_port()}"
    endpoints = [one.endpoint, two.endpoint, never]
    fit = pool_fit(header, hardware, configured_checks(endpoints), endpoints)
    assert fit is not None and fit.verdict == "pool" and fit.badge == "fits across this PC + 2 remote"
    assert fit.n_gpu_layers == header.block_count + 1
    assert fit.estimate is not None
    names = [d.name for d in fit.estimate.devices]
    assert names[:3] == ["CPU", "RPC0", "RPC1"]
    assert [d.memory_free for d in fit.estimate.devices[1:3]] == [c.memory_free for c in checks]
    assert sum(len(d.layers) for d in fit.estimate.devices[1:3]) == header.block_count + 1
    assert f"{never} not counted: never checked" in " ".join(fit.notes)
    assert f"{one.endpoint} runs on this machine" in " ".join(fit.notes)
    assert pool_fit(header, hardware, [None], [never]) is None
    # 16M tokens of context: the KV cache alone is far beyond both servers' memory and this PC's.
    short = pool_fit(header, hardware, checks, [one.endpoint, two.endpoint], n_ctx=1 << 24)
    assert short is not None and short.verdict == "no_fit" and short.badge == "won't fit this PC + 2 remote"
    assert short.n_gpu_layers == -1 and short.summary.startswith("Does not fit the pool")
