"""The Hub unreachable (a closed port on 127.0.0.1): every Hub operation says so at once, in one message."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.errors import DownloadError, HubError
from models.hub.download import DownloadRequest, download
from models.hub.reach import HubUnreachable, hub_unreachable, require_hub
from models.hub.remote import read_remote_header
from models.hub.repos import RemoteFile, repo_files, search_models
from tests.models.hub.hubserver import HubServer

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def dead_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """HF_ENDPOINT on a 127.0.0.1 port that nothing listens on: connections are refused, as when offline."""
    from huggingface_hub import constants

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # The port may be one an earlier test's live Hub server had, remembered for a minute as answering.
    from models.hub import reach

    monkeypatch.setattr(reach, "_ok_at", {})
    yield f"127.0.0.1:{port}"


def test_the_probe_names_the_host_and_the_reason(dead_hub: str) -> None:
    reason = hub_unreachable()
    assert reason is not None and reason.startswith(dead_hub) and "refused" in reason
    with pytest.raises(HubUnreachable, match=f"Search: the Hub cannot be reached \\({dead_hub}"):
        require_hub("Search")


def test_the_probe_says_a_live_hub_is_there(hub: HubServer) -> None:
    assert hub_unreachable() is None


@pytest.mark.parametrize("operation", ["search", "files", "header", "download"])
def test_each_hub_operation_fails_at_once_without_retries(dead_hub: str, operation: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    calls = {
        "search": lambda: list(search_models("llama")),
        "files": lambda: repo_files("org/x"),
        "header": lambda: read_remote_header("org/x", "x-Q4_0.gguf"),
        "download": lambda: download(DownloadRequest("org/x", (RemoteFile("x-Q4_0.gguf", None, None),))),
    }
    error_type = DownloadError if operation == "download" else HubError
    with pytest.raises(error_type, match="the Hub cannot be reached") as info:
        calls[operation]()
    assert dead_hub in str(info.value)
    # huggingface_hub's retries log "Retrying in 1s [Retry 1/5]" and ours "retry 1 in 1.0 s": none of either.
    assert not [r for r in caplog.records if "retry" in r.getMessage().lower()]


def test_cli_search_offline_is_one_line(dead_hub: str) -> None:
    run = subprocess.run([sys.executable, "-m", "models.cli", "search", "llama"], cwd=ROOT, env=dict(os.environ),
                         capture_output=True, text=True, timeout=120)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 1
    assert len(lines) == 1 and lines[0].startswith("error: Search: the Hub cannot be reached"), run.stderr


def test_a_hub_that_comes_back_is_found_again(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    hub.add_repo("org/x", {"x-Q4_0.gguf": b"GGUF"})
    live = constants.ENDPOINT
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", dead)
    with pytest.raises(HubUnreachable):
        require_hub("Search")
    monkeypatch.setattr(constants, "ENDPOINT", live)
    require_hub("Search")  # no error, and the failure above was not remembered
    assert repo_files("org/x").find("Q4_0").files[0].size == 4


def test_cli_prints_huggingface_hub_warnings_once(hub: HubServer) -> None:
    # The Hub is there but its listing fails twice with 503: huggingface_hub retries and warns each time.
    hub.add_repo("org/llama-GGUF", {"x-Q4_0.gguf": b"GGUF"})
    hub.faults.fail.append(["/api/models", 503, 2])
    run = subprocess.run([sys.executable, "-m", "models.cli", "search", "llama"], cwd=ROOT, env=dict(os.environ),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "org/llama-GGUF" in run.stdout, run.stderr
    retries = [line for line in run.stderr.splitlines() if "Retry" in line]
    assert len(retries) == 2, run.stderr  # one line per retry, not two
