"""A self-hosted mirror (olah): repo info only under /revision/{rev}, sizes only in the tree; search, files, download."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from models.cli import main
from models.hub.download import download, plan_download
from models.hub.repos import repo_files, search_models
from tests.models.hub.hubserver import HubServer


@pytest.fixture
def olah(hub: HubServer, tiny_gguf: Path, big_gguf: Path) -> HubServer:
    hub.olah = True
    data = tiny_gguf.read_bytes()
    hub.add_repo("org/Tiny-GGUF", {
        "tiny-Q4_K_M.gguf": data, "big-Q8_0.gguf": big_gguf,
        "Q2_K/tiny-Q2_K-00001-of-00002.gguf": data[:100], "Q2_K/tiny-Q2_K-00002-of-00002.gguf": data[100:],
        "README.md": b"# hi"}, downloads=3, gguf={"total": 1000, "architecture": "llama", "context_length": 2048})
    return hub


def test_the_mirror_refuses_repo_info_without_a_revision(olah: HubServer) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    with pytest.raises(HfHubHTTPError):
        HfApi().model_info("org/Tiny-GGUF")  # what every `files` and `download` did before
    assert HfApi().model_info("org/Tiny-GGUF", revision="main").siblings[0].size is None


def test_files_through_the_mirror_have_sizes_and_sha256_from_the_tree(olah: HubServer, tiny_gguf: Path,
                                                                        big_gguf: Path) -> None:
    hosted = olah.repos["org/Tiny-GGUF"]
    info = repo_files("org/Tiny-GGUF")
    assert info.commit == hosted.sha and info.architecture == "llama"
    q4 = info.find("Q4_K_M")
    assert q4.total_size == tiny_gguf.stat().st_size and q4.files[0].sha256 == hosted.files["tiny-Q4_K_M.gguf"].sha256
    assert info.find("Q8_0").total_size == big_gguf.stat().st_size
    q2 = info.find("Q2_K")
    assert q2.is_split and q2.total_size == tiny_gguf.stat().st_size and q2.verifiable
    assert [m.quant for m in info.models] == ["Q2_K", "Q4_K_M", "Q8_0"]  # sorted by size, which needs the sizes
    assert any(s.path.startswith("/api/models/org/Tiny-GGUF/revision/main") for s in olah.served)


def test_search_and_download_through_the_mirror(olah: HubServer, big_gguf: Path) -> None:
    assert [h.repo_id for h in search_models("tiny")] == ["org/Tiny-GGUF"]
    result = download(plan_download("org/Tiny-GGUF", "Q8_0"))
    assert result.verified
    assert hashlib.sha256(result.paths[0].read_bytes()).hexdigest() == \
        hashlib.sha256(big_gguf.read_bytes()).hexdigest()


def test_cli_search_files_download_through_the_mirror(olah: HubServer, tiny_gguf: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "tiny", "--json"]) == 0
    assert [json.loads(line)["repo_id"] for line in capsys.readouterr().out.splitlines()] == ["org/Tiny-GGUF"]
    assert main(["files", "org/Tiny-GGUF"]) == 0
    out = capsys.readouterr().out
    assert "Q4_K_M" in out and "?" not in out.split("Q4_K_M")[1].split("\n")[0]  # a size, not "?"
    assert main(["download", "org/Tiny-GGUF", "Q4_K_M", "--json"]) == 0
    done = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert done["event"] == "done" and done["verified"] is True
