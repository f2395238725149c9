"""The GGUF models on this machine: the HF cache, user folders, other apps' folders, imports; listed in place, never copied."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import platformdirs
from huggingface_hub import constants, hf_hub_download, scan_cache_dir
from huggingface_hub.errors import CacheNotFound, CorruptedCacheException
from huggingface_hub.file_download import repo_folder_name

from models.errors import DownloadError, ModelFileError, TokenometerError
from models.gguf.reader import GGUFHeader, read_gguf_header
from models.files import atomic_write_text
from models.paths import data_dir, models_dir
from models.hub.names import shard_name
from models.hub.starter import starter_model_path

log = logging.getLogger(__name__)

Source = Literal["starter", "hf-cache", "folder", "imported", "owned", "lmstudio", "llama.cpp", "ollama", "gpt4all"]
_OLLAMA_MODEL = "application/vnd.ollama.image.model"


class LibraryError(TokenometerError):
    """A library operation was refused (a file the app does not own, an unknown entry)."""


@dataclass
class HeaderFacts:
    """The header facts shown per entry (read with the bounded GGUF reader)."""

    architecture: str
    name: str
    n_params: int
    block_count: int
    context_length: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    file_type_name: str

    @classmethod
    def of(cls, header: GGUFHeader) -> HeaderFacts:
        return cls(header.architecture, header.name, header.n_params, header.block_count, header.context_length,
                   header.embedding_length, header.head_count, header.head_count_kv, header.file_type_name)


@dataclass
class LibraryEntry:
    """One local model: a GGUF file, or the first shard of a split model with the shards' total size."""

    path: Path
    source: Source
    size: int
    shards: list[Path] = field(default_factory=list)
    repo_id: str | None = None
    revision: str | None = None  # the HF cache commit
    label: str = ""  # e.g. Ollama's model:tag
    header: HeaderFacts | None = None
    header_error: str | None = None

    @property
    def deletable(self) -> bool:
        return self.source in ("hf-cache", "owned")


# --- settings: the folders the user added, files imported and files the app downloaded elsewhere --------------

def _store_path() -> Path:
    return data_dir() / "library.json"


def _load() -> dict[str, list[str]]:
    try:
        data = json.loads(_store_path().read_text())
    except FileNotFoundError:
        return {"folders": [], "imported": [], "owned": []}
    except (OSError, ValueError) as error:
        log.warning("Ignoring an unreadable %s: %s", _store_path(), error)
        return {"folders": [], "imported": [], "owned": []}
    return {key: [str(v) for v in data.get(key, []) if isinstance(v, str)] for key in ("folders", "imported", "owned")}


def _save(data: dict[str, list[str]]) -> None:
    atomic_write_text(_store_path(), json.dumps(data, indent=1))  # never a half-written settings file


def _add(key: str, path: Path) -> None:
    data = _load()
    value = str(Path(path).expanduser().resolve())
    if value not in data[key]:
        data[key].append(value)
        _save(data)


def _remove(key: str, path: Path) -> None:
    data = _load()
    value = str(Path(path).expanduser().resolve())
    if value in data[key]:
        data[key].remove(value)
        _save(data)


def add_folder(folder: Path) -> None:
    """Scan this folder (recursively) for GGUFs from now on."""
    if not Path(folder).is_dir():
        raise LibraryError(f"{folder} is not a folder.")
    _add("folders", folder)


def remove_folder(folder: Path) -> None:
    _remove("folders", folder)


def folders() -> list[Path]:
    return [Path(p) for p in _load()["folders"]]


def import_file(path: Path) -> LibraryEntry:
    """Add one GGUF by path (it stays where it is); refuses a file that is not a readable GGUF."""
    path = Path(path).expanduser().resolve()
    header = read_gguf_header(path)  # raises ModelFileError for anything that is not a sound GGUF
    _add("imported", path)
    return LibraryEntry(path, "imported", path.stat().st_size, [path], header=HeaderFacts.of(header))


def remember_owned(path: Path) -> None:
    """Record a file the app downloaded outside the HF cache: the app may delete it later."""
    _add("owned", path)


# --- adopting finished downloads ---------------------------------------------------------------------------------

def hf_blob_path(repo_id: str, etag: str) -> Path:
    """Where huggingface_hub keeps the blob with this ETag for a model repo."""
    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model") / "blobs" / etag


def adopt_into_hf_cache(file: Path, *, repo_id: str, filename: str, etag: str, commit: str, revision: str,
                        token: str | bool | None = None) -> Path:
    """Hand a verified download to the HF cache so every HF tool sees it; returns the snapshot path."""
    blob = hf_blob_path(repo_id, etag)
    blob.parent.mkdir(parents=True, exist_ok=True)
    if blob.exists():
        file.unlink(missing_ok=True)
    elif file.exists():
        shutil.move(str(file), str(blob))
    cache = Path(constants.HF_HUB_CACHE)
    # The blob now sits where huggingface_hub would have put it, so its own call only links the snapshot and,
    # when the branch still points at our commit, records the ref; dry_run proves it will not download.
    dry = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache, token=token, dry_run=True)
    if dry.will_download or dry.commit_hash != commit:  # type: ignore[union-attr]
        revision = commit  # the branch moved on: keep our commit's snapshot, leave the ref alone
        dry = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache, token=token, dry_run=True)
        if dry.will_download:  # type: ignore[union-attr]
            raise DownloadError(f"{filename}: the Hub's ETag changed during the download; run it again.")
    return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache, token=token))  # type: ignore[arg-type]


def adopt_into_folder(file: Path, folder: Path, relative: PurePosixPath) -> Path:
    """Move a verified download into a folder the user chose (refusing any path that leaves it); the app owns it."""
    root = Path(folder).expanduser().resolve()
    dest = (root / relative).resolve()
    if root not in dest.parents:
        raise DownloadError(f"Refusing to write {relative} outside {root}.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(file), str(dest))
    remember_owned(dest)
    return dest


# --- sources -----------------------------------------------------------------------------------------------------

def other_app_folders() -> dict[Source, list[Path]]:
    """Where other local-model apps keep GGUFs (looked up at call time, so HOME and env overrides apply)."""
    home = Path.home()
    llama_cache = os.environ.get("LLAMA_CACHE")
    gpt4all = {"darwin": home / "Library" / "Application Support" / "nomic.ai" / "GPT4All",
               "win32": Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local")) / "nomic.ai" / "GPT4All"}
    return {
        "lmstudio": [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"],
        "llama.cpp": [Path(llama_cache)] if llama_cache else [Path(platformdirs.user_cache_dir("llama.cpp",
                                                                                                appauthor=False))],
        "gpt4all": [gpt4all.get(sys.platform, home / ".local" / "share" / "nomic.ai" / "GPT4All")],
    }


def _ollama_root() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models")


def _ollama_models() -> Iterator[tuple[Path, str]]:
    """(blob, name:tag) for each Ollama model, found through its manifests (blobs have no names of their own)."""
    root = _ollama_root()
    manifests = root / "manifests"
    if not manifests.is_dir():
        return
    for manifest in manifests.rglob("*"):
        if not manifest.is_file() or manifest.stat().st_size > 1 << 20:
            continue
        try:
            layers = json.loads(manifest.read_text()).get("layers", [])
        except (OSError, ValueError, AttributeError):
            continue
        for layer in layers if isinstance(layers, list) else []:
            digest = layer.get("digest", "") if isinstance(layer, dict) else ""
            if layer.get("mediaType") == _OLLAMA_MODEL and re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                blob = root / "blobs" / digest.replace(":", "-")
                if blob.is_file():
                    rel = manifest.relative_to(manifests).parts
                    yield blob, f"{'/'.join(rel[-3:-1]) if len(rel) >= 3 else rel[0]}:{rel[-1]}"


def _ggufs_in(folder: Path) -> Iterator[Path]:
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() == ".gguf" and path.is_file() and not path.name.startswith("."):
            yield path


def _group(paths: list[Path]) -> list[tuple[Path, list[Path]]]:
    """Split shards become one entry, keyed on their first shard."""
    groups: dict[tuple[Path, str], dict[int, Path]] = {}
    out: list[tuple[Path, list[Path]]] = []
    for path in paths:
        shard = shard_name(path.name)
        if shard:
            groups.setdefault((path.parent, shard.base), {})[shard.index] = path
        else:
            out.append((path, [path]))
    for shards in groups.values():
        ordered = [shards[i] for i in sorted(shards)]
        out.append((ordered[0], ordered))
    return out


def _hf_entries() -> Iterator[LibraryEntry]:
    try:
        info = scan_cache_dir(constants.HF_HUB_CACHE)
    except (CacheNotFound, CorruptedCacheException, OSError) as error:
        log.debug("No usable HF cache: %s", error)
        return
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            files = sorted((f.file_path for f in revision.files if f.file_name.lower().endswith(".gguf")), key=str)
            for first, shards in _group(files):
                size = sum(p.stat().st_size for p in shards if p.exists())
                yield LibraryEntry(first, "hf-cache", size, shards, repo_id=repo.repo_id,
                                   revision=revision.commit_hash)


def _with_header(entry: LibraryEntry) -> LibraryEntry:
    try:
        entry.header = HeaderFacts.of(read_gguf_header(entry.path))
    except ModelFileError as error:
        entry.header_error = str(error)
    return entry


def list_models(*, read_headers: bool = True, include_other_apps: bool = True) -> list[LibraryEntry]:
    """Every local GGUF the app knows about, each once (the first source that finds a file wins)."""
    entries: list[LibraryEntry] = []
    starter = starter_model_path()
    if starter is not None:
        entries.append(LibraryEntry(starter, "starter", starter.stat().st_size, [starter],
                                    repo_id="HuggingFaceTB/SmolLM2-135M-Instruct"))
    entries.extend(_hf_entries())
    data = _load()
    plain: list[tuple[Source, list[Path]]] = [
        ("owned", [Path(p) for p in data["owned"] if Path(p).is_file()]),
        ("imported", [Path(p) for p in data["imported"] if Path(p).is_file()]),
        ("owned", list(_ggufs_in(models_dir()))),
        ("folder", [p for folder in data["folders"] for p in _ggufs_in(Path(folder))]),
    ]
    if include_other_apps:
        plain += [(source, [p for folder in dirs for p in _ggufs_in(folder)])
                  for source, dirs in other_app_folders().items()]
    for source, paths in plain:
        for first, shards in _group(paths):
            entries.append(LibraryEntry(first, source, sum(p.stat().st_size for p in shards), shards))
    if include_other_apps:
        entries.extend(LibraryEntry(blob, "ollama", blob.stat().st_size, [blob], label=name)
                       for blob, name in _ollama_models())
    seen: set[Path] = set()
    unique = []
    for entry in entries:
        real = entry.path.resolve()
        if real not in seen:
            seen.add(real)
            unique.append(_with_header(entry) if read_headers else entry)
    return unique


def delete(entry: LibraryEntry) -> int:
    """Remove a model from disk; only HF cache entries and files the app downloaded. Returns bytes freed."""
    if entry.source == "hf-cache":
        return _delete_from_hf_cache(entry)
    if entry.source != "owned":
        raise LibraryError(f"{entry.path} belongs to {entry.source}, not to Tokenometer; it was not deleted "
                           "(use forget() to drop it from the list).")
    freed = 0
    for shard in entry.shards or [entry.path]:
        if shard.exists():
            freed += shard.stat().st_size
            shard.unlink()
        _remove("owned", shard)
    return freed


def forget(entry: LibraryEntry) -> None:
    """Drop an imported file or an added folder's file from the list without touching the file."""
    for shard in entry.shards or [entry.path]:
        _remove("imported", shard)


def _delete_from_hf_cache(entry: LibraryEntry) -> int:
    info = scan_cache_dir(constants.HF_HUB_CACHE)
    repo = next((r for r in info.repos if r.repo_id == entry.repo_id and r.repo_type == "model"), None)
    revision = next((rev for rev in repo.revisions if rev.commit_hash == entry.revision), None) if repo else None
    if repo is None or revision is None:
        raise LibraryError(f"{entry.path} is no longer in the Hugging Face cache.")
    ours = {str(p) for p in entry.shards}
    if {str(f.file_path) for f in revision.files} <= ours:
        # The revision holds only this model: huggingface_hub's own strategy removes snapshot, refs and blobs.
        strategy = info.delete_revisions(revision.commit_hash)
        strategy.execute()
        return strategy.expected_freed_size
    # Other files share the revision (other quants): remove our links, and blobs no other snapshot uses, the
    # same steps the strategy takes per file, so the rest of the snapshot stays intact.
    used_elsewhere = {f.blob_path for rev in repo.revisions for f in rev.files if str(f.file_path) not in ours}
    freed = 0
    for cached in revision.files:
        if str(cached.file_path) in ours:
            cached.file_path.unlink(missing_ok=True)
            if cached.blob_path not in used_elsewhere and cached.blob_path.exists():
                freed += cached.blob_path.stat().st_size
                cached.blob_path.unlink()
    return freed
