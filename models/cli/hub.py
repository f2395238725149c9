"""CLI: tokenometer search, files, download, models."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from models.cli.jobs import run_cancellable
from models.text import printable
from models.units import fmt_bytes, fmt_speed

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's subcommands (each sets `handler`)."""
    search = subparsers.add_parser("search", help="search the Hugging Face Hub for GGUF models")
    search.add_argument("query", nargs="?", default="", help="text in the repo name")
    search.add_argument("--sort", default="downloads", choices=["downloads", "likes", "trending", "last_modified"])
    search.add_argument("--author", help="only this user or organisation")
    search.add_argument("--limit", type=int, default=20, help="how many results (default 20)")
    search.add_argument("--json", action="store_true", help="one JSON object per line")
    search.set_defaults(handler=_search)

    files = subparsers.add_parser("files", help="a repo's GGUF models by quant, with sizes and sha256")
    files.add_argument("repo", help="owner/name")
    files.add_argument("--revision", default=None)
    files.add_argument("--json", action="store_true")
    files.set_defaults(handler=_files)

    download = subparsers.add_parser(
        "download", help="download a quant (all shards) or a file; Ctrl-C pauses, run again to resume")
    download.add_argument("repo", help="owner/name")
    download.add_argument("selector", metavar="QUANT|FILE", help="a quant label (Q4_K_M) or a file name")
    download.add_argument("--dir", type=Path, default=None, help="a folder instead of the Hugging Face cache")
    download.add_argument("--revision", default=None)
    download.add_argument("--json", action="store_true", help="progress and result as JSON lines on stdout")
    download.set_defaults(handler=_download)

    models = subparsers.add_parser("models", help="the local GGUF models (HF cache, folders, other apps)")
    models.add_argument("--no-headers", action="store_true", help="skip reading each file's header")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=_models)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "value") and isinstance(getattr(value, "value"), str):  # enums
        return value.value
    return value


def _emit(obj: Any) -> None:
    print(json.dumps(_plain(obj)), flush=True)


def _size(n: int | None) -> str:
    return "?" if n is None else fmt_bytes(n)  # binary units, as everywhere (models.units)


def _search(args: argparse.Namespace) -> int:
    from models.hub.repos import search_models

    for hit in search_models(args.query or None, sort=args.sort, author=args.author, limit=args.limit):
        if args.json:
            _emit(hit)
        else:
            flags = " gated" if hit.gated else ""
            print(f"{printable(hit.repo_id):60} {hit.downloads:>10} dl {hit.likes:>6} likes{flags}")
    return 0


def _files(args: argparse.Namespace) -> int:
    from models.hub.repos import repo_files

    repo = repo_files(args.repo, revision=args.revision)
    if args.json:
        data = _plain(repo)
        for model, plain in zip(repo.models, data["models"]):
            plain["total_size"] = model.total_size
        _emit(data)
        return 0
    facts = ", ".join(f"{k} {v}" for k, v in (("arch", repo.architecture), ("context", repo.context_length),
                                                ("params", repo.n_params), ("licence", repo.license)) if v)
    print(printable(f"{repo.repo_id}{' (gated: a token is needed)' if repo.gated else ''}"
                    f"{' - ' + facts if facts else ''}"))
    for model in repo.models:
        shards = f" ({len(model.files)} shards)" if model.is_split else ""
        check = "sha256" if model.verifiable else "no sha256"
        print(printable(f"  {model.quant:12} {_size(model.total_size):>10}  {model.name}{shards}  [{check}]"))
    for missing in repo.incomplete_splits:
        print(printable(f"  incomplete split model: {missing}"))
    return 0


def _download(args: argparse.Namespace) -> int:
    from models.hub.download import download, plan_download
    from models.hub.transfer import DownloadPaused, StopToken

    request = plan_download(args.repo, args.selector, revision=args.revision, target_dir=args.dir)
    stop = StopToken()
    outcome: dict[str, Any] = {}

    def progress(p: Any) -> None:
        if args.json:
            _emit({"event": "progress", **_plain(p)})
            return
        total = f"/{_size(p.bytes_total)}" if p.bytes_total else ""
        eta = f" ETA {p.eta_s:.0f}s" if p.eta_s is not None else ""
        print(f"\r{p.state.value:9} {printable(p.filename)[-40:]:40} {_size(p.bytes_done)}{total} "
              f"{fmt_speed(p.speed_bps)}{eta}   ", end="", file=sys.stderr, flush=True)

    def work() -> None:
        try:
            outcome["result"] = download(request, on_progress=progress, stop=stop)
        except Exception as error:  # reported below, after the progress line is ended (a pause included)
            outcome["error"] = error

    # The transfer runs on a worker thread so Ctrl-C in the main thread becomes a clean pause.
    run_cancellable(work, cancel=stop.pause, name="download", message="")
    if not args.json:
        print(file=sys.stderr)
    error = outcome.get("error")
    if isinstance(error, DownloadPaused):
        print(printable(f"paused: {error}"), file=sys.stderr)
        return 130
    if error is not None:
        raise error
    result = outcome["result"]
    if args.json:
        _emit({"event": "done", **_plain(result)})
    else:
        for path in result.paths:
            print(printable(path))
        print("sha256 verified" if result.verified else printable("UNVERIFIED: " + " ".join(result.notes)),
              file=sys.stderr)
    return 0


def _models(args: argparse.Namespace) -> int:
    from models.hub.library import list_models

    for entry in list_models(read_headers=not args.no_headers):
        if args.json:
            _emit(entry)
            continue
        header = entry.header
        facts = (f"{header.architecture} {header.file_type_name} ctx {header.context_length}"
                 if header else (entry.header_error or ""))
        print(printable(f"{entry.source:9} {_size(entry.size):>10}  {entry.label or entry.repo_id or ''} "
                        f"{entry.path}  {facts}"))
    return 0
