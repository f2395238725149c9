"""One wording for a Hub failure wherever it surfaces (listing, remote header, download), and one shard pattern."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.errors import DownloadError, HubError
from models.hub.download import DownloadRequest, download
from models.hub.library import _group
from models.hub.names import shard_name
from models.hub.remote import read_remote_header
from models.hub.repos import RemoteFile, group_quants, repo_files
from tests.models.hub.hubserver import HubServer

ROOT = Path(__file__).resolve().parents[3]


def _after_what(message: str) -> str:
    return message.split(": ", 1)[1]


def test_a_gated_repo_is_worded_alike_for_the_header_and_the_download(hub: HubServer, tiny_gguf: Path) -> None:
    hub.add_repo("org/Gated-GGUF", {"tiny-Q4_K_M.gguf": tiny_gguf}, gated="manual")
    with pytest.raises(HubError) as header:
        read_remote_header("org/Gated-GGUF", "tiny-Q4_K_M.gguf")
    with pytest.raises(DownloadError) as fetched:
        download(DownloadRequest("org/Gated-GGUF", (RemoteFile("tiny-Q4_K_M.gguf", None, None),)))
    expected = (f"the repo is gated: accept its terms at {hub.url}/org/Gated-GGUF, and log in with `hf auth login` "
                "so Tokenometer can use your token.")
    assert _after_what(str(header.value)) == _after_what(str(fetched.value)) == expected


def test_a_missing_repo_is_worded_alike_for_the_listing_and_the_download(hub: HubServer) -> None:
    with pytest.raises(HubError) as listed:
        repo_files("org/none")
    with pytest.raises(DownloadError) as fetched:
        download(DownloadRequest("org/none", (RemoteFile("x.gguf", None, None),)))
    assert _after_what(str(listed.value)) == _after_what(str(fetched.value)) == \
        "no such repo, or it is private and needs a token (`hf auth login`)."


def test_the_shard_pattern_lives_in_one_module() -> None:
    holders = [p.relative_to(ROOT).as_posix() for p in (ROOT / "models").rglob("*.py")
               if r"-of-(?P<count>" in p.read_text(encoding="utf-8") or r"-of-\d{5}" in p.read_text(encoding="utf-8")]
    assert holders == ["models/hub/names.py"]


def test_the_hub_listing_and_the_library_group_shards_alike(tmp_path: Path) -> None:
    names = ["m-Q8_0-00002-of-00002.GGUF", "m-Q8_0-00001-of-00002.GGUF", "one-Q4_0.gguf"]
    models, incomplete = group_quants([RemoteFile(n, 1, None) for n in names])
    local = _group([tmp_path / n for n in names])
    assert incomplete == []
    assert sorted(len(m.files) for m in models) == sorted(len(files) for _, files in local) == [1, 2]
    assert shard_name("dir/m-00003-of-00010.gguf") is not None and shard_name("m-3-of-10.gguf") is None
    assert (shard_name("dir/m-00003-of-00010.gguf").base, shard_name("dir/m-00003-of-00010.gguf").index) == \
        ("dir/m", 3)  # type: ignore[union-attr]
