"""The local library: HF cache, added folders, other apps' folders, Ollama via manifests, import and delete."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from huggingface_hub import scan_cache_dir

from models.hub import library
from models.hub.download import download, plan_download
from models.errors import ModelFileError
from models.hub.library import LibraryError, list_models
from tests.models.hub.hubserver import HubServer, make_gguf


def _by_source(entries: list[library.LibraryEntry]) -> dict[str, list[library.LibraryEntry]]:
    out: dict[str, list[library.LibraryEntry]] = {}
    for entry in entries:
        out.setdefault(entry.source, []).append(entry)
    return out


def test_other_apps_and_added_folders_are_listed_in_place(hub: HubServer, tmp_path: Path) -> None:
    home = Path.home()  # the fixture's empty HOME
    make_gguf(home / ".lmstudio" / "models" / "pub" / "repo" / "lm-Q4_K_M.gguf", name="lm")
    make_gguf(home / ".cache" / "llama.cpp" / "org_repo_cpp-Q8_0.gguf", name="cpp")
    make_gguf(home / ".local" / "share" / "nomic.ai" / "GPT4All" / "g4a-Q4_0.gguf", name="g4a")
    ollama = home / ".ollama" / "models"
    blob = make_gguf(tmp_path / "ollama.gguf", name="olla")
    digest = __import__("hashlib").sha256(blob.read_bytes()).hexdigest()
    (ollama / "blobs").mkdir(parents=True)
    shutil.copy(blob, ollama / "blobs" / f"sha256-{digest}")
    manifest = ollama / "manifests" / "registry.ollama.ai" / "library" / "smol" / "latest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": 1},
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "0" * 64, "size": 1}]}))
    mine = tmp_path / "my-models"
    make_gguf(mine / "a-00001-of-00002.gguf", name="a1")
    make_gguf(mine / "a-00002-of-00002.gguf", name="a2")
    (mine / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    library.add_folder(mine)

    found = _by_source(list_models())
    assert [e.header.name for e in found["lmstudio"]] == ["lm"]  # type: ignore[union-attr]
    assert [e.header.name for e in found["llama.cpp"]] == ["cpp"]  # type: ignore[union-attr]
    assert [e.header.name for e in found["gpt4all"]] == ["g4a"]  # type: ignore[union-attr]
    assert [(e.label, e.header.name) for e in found["ollama"]] == [("library/smol:latest", "olla")]  # type: ignore[union-attr]
    folder = {e.path.name: e for e in found["folder"]}
    assert set(folder) == {"a-00001-of-00002.gguf", "broken.gguf"}  # shards listed once
    split = folder["a-00001-of-00002.gguf"]
    assert len(split.shards) == 2 and split.size == sum(p.stat().st_size for p in split.shards)
    assert folder["broken.gguf"].header is None and "Truncated" in (folder["broken.gguf"].header_error or "")
    with pytest.raises(LibraryError, match="not to Tokenometer"):
        library.delete(found["lmstudio"][0])
    assert found["lmstudio"][0].path.exists()


def test_hf_cache_entries_and_delete_through_huggingface_hub(hub: HubServer, tiny_gguf: Path,
                                                            big_gguf: Path) -> None:
    hub.add_repo("org/One-GGUF", {"tiny-Q4_K_M.gguf": tiny_gguf})
    hub.add_repo("org/Two-GGUF", {"tiny-Q4_K_M.gguf": tiny_gguf, "big-Q8_0.gguf": big_gguf})
    download(plan_download("org/One-GGUF", "Q4_K_M"))
    download(plan_download("org/Two-GGUF", "Q4_K_M"))
    download(plan_download("org/Two-GGUF", "Q8_0"))
    cached = {(e.repo_id, e.path.name): e for e in list_models() if e.source == "hf-cache"}
    assert set(cached) == {("org/One-GGUF", "tiny-Q4_K_M.gguf"), ("org/Two-GGUF", "tiny-Q4_K_M.gguf"),
                           ("org/Two-GGUF", "big-Q8_0.gguf")}
    assert cached[("org/One-GGUF", "tiny-Q4_K_M.gguf")].header.context_length == 2048  # type: ignore[union-attr]
    # The only model of its revision: huggingface_hub's delete_revisions strategy removes the whole repo entry.
    assert library.delete(cached[("org/One-GGUF", "tiny-Q4_K_M.gguf")]) == tiny_gguf.stat().st_size
    # One quant of several: only its link and blob go, the other quant stays usable.
    library.delete(cached[("org/Two-GGUF", "big-Q8_0.gguf")])
    repos = {r.repo_id: r for r in scan_cache_dir(os.environ["HF_HUB_CACHE"]).repos}
    assert set(repos) == {"org/Two-GGUF"}
    assert [f.file_name for r in repos.values() for rev in r.revisions for f in rev.files] == ["tiny-Q4_K_M.gguf"]
    assert repos["org/Two-GGUF"].size_on_disk == tiny_gguf.stat().st_size


def test_import_by_path_and_owned_downloads(hub: HubServer, tiny_gguf: Path, tmp_path: Path) -> None:
    entry = library.import_file(tiny_gguf)
    assert entry.header is not None and entry.header.architecture == "llama"
    (tmp_path / "not.gguf").write_bytes(b"hello")
    with pytest.raises(ModelFileError):
        library.import_file(tmp_path / "not.gguf")
    hub.add_repo("org/One-GGUF", {"one-Q4_K_M.gguf": tiny_gguf})
    target = tmp_path / "chosen"
    path = download(plan_download("org/One-GGUF", "Q4_K_M", target_dir=target)).paths[0]
    found = {e.path: e for e in list_models(read_headers=False)}
    assert found[tiny_gguf.resolve()].source == "imported"
    assert found[path].source == "owned" and found[path].deletable
    with pytest.raises(LibraryError):
        library.delete(found[tiny_gguf.resolve()])  # imported: the user's file, never deleted by the app
    library.forget(found[tiny_gguf.resolve()])
    assert tiny_gguf.exists() and tiny_gguf.resolve() not in {e.path for e in list_models(read_headers=False)}
    library.delete(found[path])
    assert not path.exists()


def test_the_starter_model_is_always_listed(starter_model: Path) -> None:
    entries = list_models()
    starter = [e for e in entries if e.source == "starter"]
    assert [e.path for e in starter] == [starter_model]
    assert starter[0].header is not None and starter[0].header.architecture == "llama"
