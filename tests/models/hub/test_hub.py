"""Search and repo listings through the real huggingface_hub client against the loopback Hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.errors import HubError
from models.hub.names import parse_quant
from models.hub.repos import RemoteFile, group_quants, repo_files, search_models
from tests.models.hub.hubserver import HubServer


@pytest.mark.parametrize(("name", "quant"), [
    ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
    ("qwen2.5-7b-instruct-q5_k_m-00001-of-00002.gguf", "Q5_K_M"),
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
    ("gemma-3-27b-it-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"),
    ("Qwen3-8B-IQ2_XS.gguf", "IQ2_XS"),
    ("model-bf16.gguf", "BF16"),
    ("phi-3-mini-fp16.gguf", "F16"),
    ("Q4_K_M/Foo-00001-of-00002.gguf", "Q4_K_M"),
    ("Qwen2.5-0.5B.gguf", None),
])
def test_quant_label_is_parsed_from_the_name(name: str, quant: str | None) -> None:
    assert parse_quant(name) == quant


def test_split_shards_group_into_one_model_with_total_size() -> None:
    files = [RemoteFile(f"m-Q8_0-0000{i}-of-00003.gguf", 100 * i, f"{i:064x}") for i in (2, 1, 3)]
    files += [RemoteFile("m-Q4_0-00001-of-00002.gguf", 5, None), RemoteFile("README.md", 1, None),
              RemoteFile("m-Q2_K.gguf", 7, "a" * 64)]
    models, incomplete = group_quants(files)
    by_quant = {m.quant: m for m in models}
    assert set(by_quant) == {"Q8_0", "Q2_K"}
    split = by_quant["Q8_0"]
    assert split.is_split and split.total_size == 600
    assert [f.filename for f in split.files] == [f"m-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert incomplete == ["m-Q4_0 (1 of 2 shards)"]


def _five_repos(hub: HubServer) -> None:
    for index, name in enumerate(["alpha", "beta", "gamma", "delta", "epsilon"]):
        hub.add_repo(f"{'org' if index % 2 else 'someone'}/{name}-GGUF", {f"{name}-Q4_K_M.gguf": b"x"},
                     downloads=index * 10, likes=100 - index, trending=index % 3)
    hub.add_repo("org/not-gguf", {"model.safetensors": b"x"}, tags=["transformers"], downloads=999)


def test_search_pages_stream_in_sorted_and_filtered(hub: HubServer) -> None:
    _five_repos(hub)
    hits = search_models(None, sort="downloads")  # the server pages by 2
    first = next(hits)
    assert first.repo_id == "someone/epsilon-GGUF"  # the most downloaded GGUF repo; the safetensors one is filtered
    assert len([s for s in hub.served if s.path == "/api/models"]) == 1  # only the first page so far
    rest = list(hits)
    assert [h.downloads for h in [first, *rest]] == [40, 30, 20, 10, 0]
    assert len([s for s in hub.served if s.path == "/api/models"]) == 3  # pages of 2 followed by Link headers
    assert [h.repo_id for h in search_models(None, sort="likes", limit=2)] == ["someone/alpha-GGUF", "org/beta-GGUF"]
    assert {h.repo_id for h in search_models("a", author="org")} == {"org/beta-GGUF", "org/delta-GGUF"}
    assert first.license == "apache-2.0"


def test_search_garbage_json_is_a_hub_error(hub: HubServer) -> None:
    _five_repos(hub)
    hub.faults.garbage_json = True
    with pytest.raises(HubError, match="cannot be read"):
        list(search_models("alpha"))


def test_search_unknown_sort_is_refused(hub: HubServer) -> None:
    with pytest.raises(HubError, match="Unknown sort"):
        list(search_models("x", sort="size"))  # type: ignore[arg-type]


def test_repo_files_grouped_with_sha256_gated_licence_and_hub_facts(hub: HubServer, tiny_gguf: Path) -> None:
    data = tiny_gguf.read_bytes()
    repo = hub.add_repo("org/Tiny-GGUF", {
        "tiny-Q4_K_M.gguf": data,
        "tiny-Q8_0-00001-of-00002.gguf": data[:100], "tiny-Q8_0-00002-of-00002.gguf": data[100:],
        "README.md": b"# hi"}, gated="manual", license="llama3.2",
        gguf={"total": 135_000_000, "architecture": "llama", "context_length": 8192})
    info = repo_files("org/Tiny-GGUF")
    assert info.gated and info.gated_mode == "manual" and info.license == "llama3.2"
    assert (info.architecture, info.context_length, info.n_params) == ("llama", 8192, 135_000_000)
    assert info.commit == repo.sha
    q4 = info.find("q4_k_m")
    assert q4.files[0].sha256 == repo.files["tiny-Q4_K_M.gguf"].sha256 and q4.total_size == len(data)
    q8 = info.find("Q8_0")
    assert q8.is_split and q8.total_size == len(data)
    assert info.find("tiny-Q8_0-00002-of-00002.gguf") is q8
    with pytest.raises(HubError, match="quants here: Q4_K_M, Q8_0"):
        info.find("IQ2_XS")


def test_mirror_without_lfs_metadata_has_no_sha256(hub: HubServer, tiny_gguf: Path) -> None:
    hub.add_repo("org/Mirror-GGUF", {"tiny-Q4_K_M.gguf": tiny_gguf.read_bytes()}, lfs_metadata=False)
    model = repo_files("org/Mirror-GGUF").find("Q4_K_M")
    assert model.files[0].sha256 is None and model.files[0].size == tiny_gguf.stat().st_size
    assert not model.verifiable


def test_unknown_repo_and_server_errors_are_hub_errors(hub: HubServer) -> None:
    with pytest.raises(HubError, match="no such repo"):
        repo_files("org/missing")
    hub.add_repo("org/x", {"x-Q4_0.gguf": b"x"})
    hub.faults.fail.append(["/api/models/org/x", 503, 1])
    with pytest.raises(HubError, match="HTTP 503"):
        repo_files("org/x")
