"""The headless commands against the loopback Hub, including a download killed with SIGKILL and resumed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.cli import main
from models.paths import downloads_state_dir
from tests.models.hub.hubserver import HubServer

ROOT = Path(__file__).resolve().parents[3]


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_search_files_download_models_with_json(hub: HubServer, big_gguf: Path, tiny_gguf: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    hub.add_repo("org/Big-GGUF", {"big-Q8_0.gguf": big_gguf, "big-Q4_K_M.gguf": tiny_gguf}, downloads=5)
    hub.add_repo("bob/Other-GGUF", {"o-Q4_0.gguf": tiny_gguf}, downloads=9)
    assert main(["search", "GGUF", "--json", "--sort", "downloads"]) == 0
    assert [h["repo_id"] for h in _lines(capsys.readouterr().out)] == ["bob/Other-GGUF", "org/Big-GGUF"]
    assert main(["search", "--author", "org", "--limit", "1", "--json"]) == 0
    assert [h["repo_id"] for h in _lines(capsys.readouterr().out)] == ["org/Big-GGUF"]
    assert main(["files", "org/Big-GGUF", "--json"]) == 0
    listing = _lines(capsys.readouterr().out)[0]
    assert {m["quant"]: m["total_size"] for m in listing["models"]} == {
        "Q4_K_M": tiny_gguf.stat().st_size, "Q8_0": big_gguf.stat().st_size}
    assert main(["files", "org/Big-GGUF"]) == 0
    assert "Q8_0" in capsys.readouterr().out
    assert main(["download", "org/Big-GGUF", "Q4_K_M", "--json"]) == 0
    done = _lines(capsys.readouterr().out)[-1]
    assert done["event"] == "done" and done["verified"] is True
    assert main(["models", "--json"]) == 0
    entries = [e for e in _lines(capsys.readouterr().out) if e["source"] == "hf-cache"]
    assert [(e["repo_id"], e["header"]["architecture"]) for e in entries] == [("org/Big-GGUF", "llama")]


def test_cli_errors_are_one_line_and_exit_1(hub: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["files", "org/missing"]) == 1
    assert "error:" in capsys.readouterr().err
    hub.add_repo("org/X-GGUF", {"x-Q4_0.gguf": b"GGUF"})
    assert main(["download", "org/X-GGUF", "Q8_0"]) == 1
    assert "quants here: Q4_0" in capsys.readouterr().err


def test_download_killed_with_sigkill_resumes_with_almost_nothing_resent(hub: HubServer, big_gguf: Path) -> None:
    hub.add_repo("org/Big-GGUF", {"big-Q8_0.gguf": big_gguf})
    size = big_gguf.stat().st_size
    hub.faults.throttle_bps = 2_000_000  # slow enough to kill it in the middle
    command = [sys.executable, "-m", "models.cli", "download", "org/Big-GGUF", "Q8_0"]
    child = subprocess.Popen(command, cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    state_dir = downloads_state_dir()
    deadline = time.monotonic() + 60  # a guard against a hang, not a measurement
    while time.monotonic() < deadline:
        parts = list(state_dir.glob("*.part"))
        if parts and parts[0].stat().st_size > size // 3:
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    kept = list(state_dir.glob("*.part"))[0].stat().st_size
    assert size // 3 < kept < size
    hub.faults.throttle_bps = None
    again = subprocess.run(command, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    path = Path(again.stdout.strip().splitlines()[-1])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(big_gguf.read_bytes()).hexdigest()
    assert "sha256 verified" in again.stderr
    resumed = hub.file_requests("big-Q8_0.gguf")[-1]
    resent = max(0, kept - (resumed.range_start or 0))
    assert resent < kept / 100
    assert resumed.bytes_sent == size - resumed.range_start  # type: ignore[operator]


def test_ctrl_c_pauses_and_keeps_the_partial(hub: HubServer, big_gguf: Path) -> None:
    hub.add_repo("org/Big-GGUF", {"big-Q8_0.gguf": big_gguf})
    hub.faults.throttle_bps = 1_000_000
    command = [sys.executable, "-m", "models.cli", "download", "org/Big-GGUF", "Q8_0"]
    child = subprocess.Popen(command, cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    state_dir = downloads_state_dir()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(p.stat().st_size > 100_000 for p in state_dir.glob("*.part")):
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130 and "paused" in err, err
    assert 100_000 < list(state_dir.glob("*.part"))[0].stat().st_size < big_gguf.stat().st_size
