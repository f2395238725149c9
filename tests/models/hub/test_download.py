"""Downloads against the loopback Hub: cache placement, resume, retries, verification and every refusal."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
from huggingface_hub import scan_cache_dir, try_to_load_from_cache

import models.hub.transfer as transfer
from models.hub.download import DownloadProgress, DownloadRequest, DownloadState, download, plan_download
from models.hub.transfer import DownloadCancelled, DownloadPaused, StopToken
from models.hub.download_queue import pending_downloads
from models.errors import DownloadError
from models.hub.repos import RemoteFile
from tests.models.hub.hubserver import HubServer

REPO = "org/Big-GGUF"
NAME = "big-Q8_0.gguf"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def big_repo(hub: HubServer, big_gguf: Path) -> Path:
    hub.add_repo(REPO, {NAME: big_gguf, "README.md": b"# big\n"})
    return big_gguf


def test_download_lands_in_the_hf_cache_verified(hub: HubServer, big_repo: Path) -> None:
    seen: list[DownloadProgress] = []
    result = download(plan_download(REPO, "Q8_0"), on_progress=seen.append)
    assert result.verified and result.notes == []
    path = result.paths[0]
    assert _sha(path) == _sha(big_repo)
    # Any HF tool finds it: the cache layout is huggingface_hub's own (blob + snapshot link + ref).
    assert Path(try_to_load_from_cache(REPO, NAME)) == path  # type: ignore[arg-type]
    assert path.is_symlink() and path.resolve().parent.name == "blobs"
    cache = scan_cache_dir(os.environ["HF_HUB_CACHE"])
    assert [r.repo_id for r in cache.repos] == [REPO]
    assert seen[-1].state == DownloadState.DONE and seen[-1].bytes_done == big_repo.stat().st_size
    assert any(p.state == DownloadState.RUNNING and p.bytes_total == big_repo.stat().st_size for p in seen)
    assert pending_downloads() == []  # no partial or state file left behind
    # The CDN never saw the token-bearing header (none here) and got exactly one GET for the bytes.
    assert len(hub.file_requests(NAME)) == 1


def test_download_into_a_chosen_folder(hub: HubServer, big_repo: Path, tmp_path: Path) -> None:
    target = tmp_path / "mine"
    result = download(plan_download(REPO, NAME, target_dir=target))
    assert result.paths == [(target / NAME).resolve()]
    assert _sha(result.paths[0]) == _sha(big_repo)


def test_split_model_downloads_all_shards_as_one_job(hub: HubServer, big_gguf: Path) -> None:
    data = big_gguf.read_bytes()
    third = len(data) // 3
    shards = {f"m-Q8_0-0000{i + 1}-of-00003.gguf": data[i * third:(i + 1) * third if i < 2 else None]
              for i in range(3)}
    hub.add_repo("org/Split-GGUF", shards)
    seen: list[DownloadProgress] = []
    result = download(plan_download("org/Split-GGUF", "Q8_0"), on_progress=seen.append)
    assert [p.name for p in result.paths] == sorted(shards)
    assert b"".join(p.read_bytes() for p in result.paths) == data
    assert seen[-1].bytes_done == seen[-1].bytes_total == len(data) and seen[-1].file_count == 3


def test_dropped_connection_resumes_from_the_bytes_on_disk(hub: HubServer, big_repo: Path) -> None:
    hub.faults.drop_after[NAME] = 1_000_000
    result = download(plan_download(REPO, "Q8_0"), backoff_s=0.01)
    assert result.verified and _sha(result.paths[0]) == _sha(big_repo)
    gets = hub.file_requests(NAME)
    assert [g.range_start for g in gets] == [0, 1_000_000]  # the second request continues where the first stopped
    assert sum(g.bytes_sent for g in gets) == big_repo.stat().st_size  # not one byte re-sent


def test_server_errors_are_retried_with_backoff(hub: HubServer, big_repo: Path) -> None:
    hub.faults.fail.append(["/cdn/", 500, 2])
    hub.faults.fail.append(["/resolve/", 503, 1])
    result = download(plan_download(REPO, "Q8_0"), backoff_s=0.01)
    assert result.verified
    statuses = [s.status for s in hub.served if s.path.startswith("/cdn/")]
    assert statuses[:2] == [500, 500] and statuses[-1] == 206


def test_persistent_server_error_gives_up_with_a_clear_message(hub: HubServer, big_repo: Path) -> None:
    request = plan_download(REPO, "Q8_0")
    hub.faults.fail.append(["/cdn/", 500, 100])
    with pytest.raises(DownloadError, match="HTTP 500"):
        download(request, backoff_s=0.001, max_retries=3)


def test_sha256_mismatch_is_not_added(hub: HubServer, big_repo: Path) -> None:
    request = plan_download(REPO, "Q8_0")
    bad = bytearray(big_repo.read_bytes())
    bad[-1] ^= 0xFF
    hub.repos[REPO].files[NAME].served = bytes(bad)
    with pytest.raises(DownloadError, match="does not match the Hub's sha256"):
        download(request)
    assert try_to_load_from_cache(REPO, NAME) is None
    assert not any(Path(os.environ["HF_HUB_CACHE"]).rglob(NAME))
    assert pending_downloads() == []


def test_full_disk_keeps_the_partial_and_resume_finishes(hub: HubServer, big_repo: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # A real full disk needs a tiny tmpfs (root only); the write function is replaced instead and raises
    # ENOSPC after 1.5 MB, exactly as os.write does when the disk fills up.
    written = 0

    def write_until_full(fd: int, data: memoryview) -> int:
        nonlocal written
        if written >= 1_500_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = os.write(fd, data[:1_500_000 - written])
        written += n
        return n

    monkeypatch.setattr(transfer, "_write", write_until_full)
    request = plan_download(REPO, "Q8_0")
    with pytest.raises(DownloadError, match="disk is full.*partial file is kept"):
        download(request)
    assert [p["bytes_done"] for p in pending_downloads()] == [1_500_000]
    monkeypatch.setattr(transfer, "_write", os.write)
    result = download(request)
    assert result.verified and _sha(result.paths[0]) == _sha(big_repo)
    assert hub.file_requests(NAME)[-1].range_start == 1_500_000


def test_not_enough_free_disk_is_refused_before_starting(hub: HubServer, big_repo: Path) -> None:
    request = plan_download(REPO, "Q8_0")
    with pytest.raises(DownloadError, match="Not enough free disk"):
        download(request, margin_bytes=1 << 60)  # a margin no disk has: the real free space is checked
    assert hub.file_requests(NAME) == []


def test_gated_repo_needs_a_token_which_is_never_sent_to_the_cdn(hub: HubServer, big_gguf: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    hub.add_repo("org/Gated-GGUF", {NAME: big_gguf}, gated="manual")
    request = plan_download("org/Gated-GGUF", "Q8_0")  # listing a gated repo is public, like on the Hub
    with pytest.raises(DownloadError, match="gated.*hf auth login"):
        download(request)
    monkeypatch.setenv("HF_TOKEN", hub.faults.token)  # huggingface_hub's own token lookup finds it
    caplog.set_level("DEBUG")
    result = download(request)
    assert result.verified
    resolves = [s for s in hub.served if "/resolve/" in s.path]
    assert resolves and all(s.authorization for s in resolves[-2:])
    assert all(not s.authorization for s in hub.file_requests(NAME))
    assert hub.faults.token not in caplog.text


def test_wrong_token_on_gated_repo_says_no_access_yet(hub: HubServer, big_gguf: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_repo("org/Gated-GGUF", {NAME: big_gguf}, gated="manual")
    monkeypatch.setenv("HF_TOKEN", "hf_not_the_right_one")
    with pytest.raises(DownloadError, match="no access yet") as info:
        download(DownloadRequest("org/Gated-GGUF", (RemoteFile(NAME, None, None),)))
    assert "hf_not_the_right_one" not in str(info.value)


def test_missing_file_and_repo_are_clear_errors(hub: HubServer, big_repo: Path) -> None:
    with pytest.raises(DownloadError, match="no such file"):
        download(DownloadRequest(REPO, (RemoteFile("nope.gguf", None, None),)))
    with pytest.raises(DownloadError, match="no such repo"):
        download(DownloadRequest("org/none", (RemoteFile(NAME, None, None),)))


@pytest.mark.parametrize("name", ["../evil.gguf", "/etc/evil.gguf", "a/../../evil.gguf", "C:/evil.gguf",
                                  "a\\..\\evil.gguf"])
def test_file_names_that_leave_the_folder_are_refused(hub: HubServer, big_gguf: Path, tmp_path: Path,
                                                      name: str) -> None:
    hub.add_repo("org/Evil-GGUF", {name: big_gguf})
    with pytest.raises(DownloadError, match="Refusing the file name"):
        download(DownloadRequest("org/Evil-GGUF", (RemoteFile(name, None, None),), target_dir=tmp_path / "t"))
    assert not (tmp_path / "evil.gguf").exists() and hub.file_requests() == []


def test_mirror_without_sha256_downloads_but_says_unverified(hub: HubServer, big_gguf: Path) -> None:
    hub.add_repo("org/Mirror-GGUF", {NAME: big_gguf}, lfs_metadata=False)
    result = download(plan_download("org/Mirror-GGUF", "Q8_0"))
    assert not result.verified and "unverified" in result.notes[0]
    assert _sha(result.paths[0]) == _sha(big_gguf)


def test_pause_keeps_the_partial_and_cancel_discards_it(hub: HubServer, big_repo: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    request = plan_download(REPO, "Q8_0")
    stop = StopToken()
    written = 0

    def write_then_pause(fd: int, data: memoryview) -> int:
        # The user presses pause once 500 kB are on disk (from the write path, so no timing is involved).
        nonlocal written
        n = os.write(fd, data)
        written += n
        if written > 500_000:
            stop.pause()
        return n

    monkeypatch.setattr(transfer, "_write", write_then_pause)
    with pytest.raises(DownloadPaused):
        download(request, stop=stop)
    monkeypatch.setattr(transfer, "_write", os.write)
    kept = pending_downloads()[0]["bytes_done"]
    assert 500_000 < kept < big_repo.stat().st_size
    result = download(request)
    assert result.verified and hub.file_requests(NAME)[-1].range_start == kept
    stop = StopToken()
    stop.cancel()
    with pytest.raises(DownloadCancelled):
        download(plan_download(REPO, NAME, target_dir=Path(os.environ["TOKENOMETER_HOME"]) / "x"), stop=stop)
    assert pending_downloads() == []


def test_a_model_already_in_the_cache_is_not_fetched_again(hub: HubServer, big_repo: Path) -> None:
    first = download(plan_download(REPO, "Q8_0"))
    again = download(plan_download(REPO, "Q8_0"))
    assert again.paths == first.paths and again.verified
    assert len(hub.file_requests(NAME)) == 1


def test_a_plain_event_pauses(hub: HubServer, big_repo: Path) -> None:
    import threading

    event = threading.Event()
    event.set()
    with pytest.raises(DownloadPaused):
        download(plan_download(REPO, "Q8_0"), stop=event)
    assert hub.file_requests(NAME) == []


def test_an_expired_cdn_link_is_renewed_from_the_hub(hub: HubServer, big_repo: Path) -> None:
    request = plan_download(REPO, "Q8_0")
    hub.faults.fail.append(["/cdn/", 403, 1])  # what a signed CDN URL answers once it has expired
    heads_before = len([s for s in hub.served if s.method == "HEAD"])
    result = download(request)
    assert result.verified
    cdn = [s.status for s in hub.served if s.path.startswith("/cdn/")]
    assert cdn == [403, 206]
    assert len([s for s in hub.served if s.method == "HEAD"]) > heads_before + 1  # the link was asked for again


def test_offline_mode_is_a_clear_refusal(hub: HubServer, big_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    request = plan_download(REPO, "Q8_0")
    from huggingface_hub import constants

    # HF_HUB_OFFLINE is read once at import; the already-imported constant is what each request checks.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError, match="offline mode"):
        download(request)
    from models.errors import HubError
    from models.hub.repos import repo_files
    with pytest.raises(HubError, match="offline mode"):
        repo_files(REPO)
