"""Find GGUF models on the Hugging Face Hub: search, and one repo's quant files with sizes, sha256 and flags."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Literal, TypeVar

from huggingface_hub import HfApi

from models.errors import HubError
from models.hub.messages import HUB_FAILURES, hub_error_message
from models.hub.names import parse_quant, shard_name
from models.hub.reach import require_hub

log = logging.getLogger(__name__)

SortKey = Literal["downloads", "likes", "trending", "last_modified"]
SORT_KEYS: tuple[str, ...] = ("downloads", "likes", "trending", "last_modified")
_HfSort = Literal["downloads", "likes", "trending_score", "last_modified"]
_HF_SORT: dict[str, _HfSort] = {"downloads": "downloads", "likes": "likes", "trending": "trending_score",
                                "last_modified": "last_modified"}
_SEARCH_FIELDS = ["author", "downloads", "likes", "trendingScore", "lastModified", "gated", "tags", "gguf"]

T = TypeVar("T")


@dataclass(frozen=True)
class RepoSummary:
    """One search hit."""

    repo_id: str
    author: str | None
    downloads: int
    likes: int
    trending_score: int
    last_modified: datetime | None
    gated: bool
    license: str | None
    architecture: str | None = None
    n_params: int | None = None


@dataclass(frozen=True)
class RemoteFile:
    """One file in a repo; sha256 is None when the Hub (or a mirror) gives no LFS metadata."""

    filename: str
    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class QuantModel:
    """One downloadable model: a single GGUF or all shards of a split GGUF, grouped under their quant label."""

    quant: str
    name: str  # the file name, or for a split model the first shard's
    files: tuple[RemoteFile, ...]
    kind: Literal["model", "mmproj"] = "model"

    @property
    def total_size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    @property
    def is_split(self) -> bool:
        return len(self.files) > 1

    @property
    def verifiable(self) -> bool:
        return all(f.sha256 for f in self.files)


@dataclass(frozen=True)
class RepoFiles:
    """A repo's GGUF models and what the Hub knows about them without a download."""

    repo_id: str
    commit: str | None
    gated: bool
    gated_mode: str | None  # "auto" or "manual" when gated
    license: str | None
    architecture: str | None
    context_length: int | None
    n_params: int | None
    models: list[QuantModel] = field(default_factory=list)
    incomplete_splits: list[str] = field(default_factory=list)  # split models with shards missing on the Hub

    def find(self, selector: str) -> QuantModel:
        """The model named by a quant label (case-insensitive) or by one of its file names."""
        for model in self.models:
            if any(f.filename == selector for f in model.files):
                return model
        matches = [m for m in self.models if m.quant.lower() == selector.lower() and m.kind == "model"]
        if len(matches) == 1:
            return matches[0]
        if matches:
            names = ", ".join(m.name for m in matches)
            raise HubError(f"{self.repo_id} has several {selector} files ({names}); name the file instead.")
        quants = ", ".join(sorted({m.quant for m in self.models})) or "none"
        raise HubError(f"{self.repo_id} has no GGUF named or quantized '{selector}' (quants here: {quants}).")


def group_quants(files: list[RemoteFile]) -> tuple[list[QuantModel], list[str]]:
    """Group GGUF files into models: shards of one split model become one entry (with all shards present)."""
    singles: list[QuantModel] = []
    splits: dict[tuple[str, int], dict[int, RemoteFile]] = {}
    for item in files:
        if not item.filename.lower().endswith(".gguf"):
            continue
        name = PurePosixPath(item.filename).name
        kind: Literal["model", "mmproj"] = "mmproj" if "mmproj" in name.lower() else "model"
        shard = shard_name(item.filename)
        if shard:
            splits.setdefault((shard.base, shard.count), {})[shard.index] = item
            continue
        singles.append(QuantModel(parse_quant(item.filename) or "unknown", item.filename, (item,), kind))
    incomplete: list[str] = []
    for (base, count), shards in splits.items():
        if sorted(shards) != list(range(1, count + 1)):
            incomplete.append(f"{base} ({len(shards)} of {count} shards)")
            continue
        ordered = tuple(shards[i] for i in range(1, count + 1))
        singles.append(QuantModel(parse_quant(ordered[0].filename) or "unknown", ordered[0].filename, ordered))
    singles.sort(key=lambda m: (m.kind != "model", m.total_size or 0, m.name))
    return singles, incomplete


def call_hub(what: str, func: Callable[[], T], *, repo_id: str | None = None) -> T:
    """Run a huggingface_hub call and turn its errors into HubError with a message meant for the user."""
    try:
        return func()
    except HUB_FAILURES as error:
        raise HubError(hub_error_message(what, error, repo_id=repo_id)) from error


def _license(info: Any) -> str | None:
    card = getattr(info, "card_data", None)
    value = getattr(card, "license", None) if card is not None else None
    if isinstance(value, str) and value:
        return value
    for tag in getattr(info, "tags", None) or []:
        if isinstance(tag, str) and tag.startswith("license:"):
            return tag.split(":", 1)[1]
    return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _gguf_facts(info: Any) -> tuple[str | None, int | None, int | None]:
    facts = getattr(info, "gguf", None)
    if not isinstance(facts, dict):
        return None, None, None
    arch = facts.get("architecture")
    return (arch if isinstance(arch, str) else None, _int_or_none(facts.get("context_length")),
            _int_or_none(facts.get("total")))


def search_models(query: str | None = None, *, sort: SortKey = "downloads", author: str | None = None,
                  limit: int | None = None, token: str | bool | None = None) -> Iterator[RepoSummary]:
    """GGUF repos matching `query`, best first by `sort`; lazy: each Hub page is fetched as the caller iterates."""
    if sort not in _HF_SORT:
        raise HubError(f"Unknown sort '{sort}'; use one of {', '.join(SORT_KEYS)}.")
    require_hub("Search")  # the listing retries five times over 23 s before admitting the Hub is not there
    api = HfApi()
    # HfApi follows the Hub's Link headers page by page, only as far as the caller iterates.
    items = api.list_models(filter="gguf", search=query or None, author=author or None, sort=_HF_SORT[sort],
                            limit=limit, expand=_SEARCH_FIELDS, token=token)  # type: ignore[arg-type]
    iterator = iter(items)
    count = 0
    while limit is None or count < limit:
        info = call_hub("Search", lambda: next(iterator, None))
        if info is None:
            return
        arch, _, n_params = _gguf_facts(info)
        yield RepoSummary(
            repo_id=info.id, author=info.author, downloads=info.downloads or 0, likes=info.likes or 0,
            trending_score=info.trending_score or 0, last_modified=info.last_modified, gated=bool(info.gated),
            license=_license(info), architecture=arch, n_params=n_params)
        count += 1


def repo_files(repo_id: str, *, revision: str | None = None, token: str | bool | None = None) -> RepoFiles:
    """A repo's GGUF models grouped by quant, each file's size and LFS sha256, gated/licence flags, Hub facts."""
    # Always with a revision: self-hosted mirrors (olah) answer /api/models/{repo}/revision/{rev} but not the
    # bare /api/models/{repo}, and on the Hub both give the same answer.
    rev = revision or "main"
    require_hub(f"Repo {repo_id}")
    info = call_hub(f"Repo {repo_id}", lambda: HfApi().model_info(repo_id, revision=rev, files_metadata=True,
                                                               token=token), repo_id=repo_id)
    files = []
    for sibling in info.siblings or []:
        lfs = sibling.lfs
        sha = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
        size = sibling.size if sibling.size is not None else (lfs.get("size") if isinstance(lfs, dict) else None)
        files.append(RemoteFile(sibling.rfilename, size, sha if isinstance(sha, str) else None))
    if any(f.size is None for f in files if f.filename.lower().endswith(".gguf")):
        # A mirror that lists siblings without sizes: the tree has them (and the LFS sha256), at the same commit.
        files = _with_tree_sizes(repo_id, files, revision=info.sha or rev, token=token)
    models, incomplete = group_quants(files)
    arch, context, n_params = _gguf_facts(info)
    gated = info.gated
    return RepoFiles(repo_id=repo_id, commit=info.sha, gated=bool(gated),
                     gated_mode=gated if isinstance(gated, str) else None, license=_license(info),
                     architecture=arch, context_length=context, n_params=n_params, models=models,
                     incomplete_splits=incomplete)


def _with_tree_sizes(repo_id: str, files: list[RemoteFile], *, revision: str,
                     token: str | bool | None) -> list[RemoteFile]:
    tree = call_hub(f"Repo {repo_id}", lambda: list(HfApi().list_repo_tree(repo_id, recursive=True, revision=revision,
                                                                         token=token)))
    known: dict[str, RemoteFile] = {}
    for entry in tree:
        size = getattr(entry, "size", None)
        if isinstance(size, int):
            lfs = getattr(entry, "lfs", None)
            sha = lfs.get("sha256") if isinstance(lfs, dict) else None
            known[entry.path] = RemoteFile(entry.path, size, sha if isinstance(sha, str) else None)
    return [f if f.size is not None else known.get(f.filename, f) for f in files]


def file_checksums(repo_id: str, filenames: list[str], *, revision: str | None = None,
                   token: str | bool | None = None) -> dict[str, RemoteFile]:
    """Size and LFS sha256 of named files at one revision (one paths-info request)."""
    entries = call_hub(f"Repo {repo_id}", lambda: HfApi().get_paths_info(repo_id, filenames, revision=revision,
                                                                      token=token))
    out: dict[str, RemoteFile] = {}
    for entry in entries:
        lfs = getattr(entry, "lfs", None)
        sha = lfs.get("sha256") if isinstance(lfs, dict) else None
        out[entry.path] = RemoteFile(entry.path, getattr(entry, "size", None), sha)
    return out
