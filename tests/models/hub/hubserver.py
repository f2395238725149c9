"""A Hub-compatible HTTP server on 127.0.0.1 (search, repo info, tree, paths-info, resolve with Range and a CDN redirect) with fault knobs."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

log = logging.getLogger(__name__)

_BLOCK = 1 << 20


@dataclass
class HostedFile:
    """One file of a repo: its bytes (in memory or on disk) and the metadata the Hub reports for it."""

    data: bytes | None = None
    path: Path | None = None
    lfs: bool = True
    sha256: str = ""
    size: int = 0
    served: bytes | None = None  # when set, the CDN serves these bytes instead (a corrupted copy)

    def __post_init__(self) -> None:
        if self.data is not None:
            self.size = len(self.data)
            self.sha256 = self.sha256 or hashlib.sha256(self.data).hexdigest()
        elif self.path is not None:
            self.size = self.path.stat().st_size
            if not self.sha256:
                digest = hashlib.sha256()
                with self.path.open("rb") as handle:
                    for block in iter(lambda: handle.read(_BLOCK), b""):
                        digest.update(block)
                self.sha256 = digest.hexdigest()

    @property
    def blob_id(self) -> str:
        return hashlib.sha1(f"blob {self.sha256}".encode()).hexdigest()


@dataclass
class HostedRepo:
    """A model repo as the Hub describes it."""

    repo_id: str
    files: dict[str, HostedFile]
    sha: str = ""
    gated: Any = False  # False, "auto" or "manual", as the Hub says
    license: str | None = "apache-2.0"
    downloads: int = 0
    likes: int = 0
    trending: int = 0
    last_modified: str = "2026-01-01T00:00:00.000Z"
    gguf: dict[str, Any] | None = None
    tags: list[str] = field(default_factory=lambda: ["gguf"])
    lfs_metadata: bool = True  # False: behave like a mirror that has no LFS metadata (no sha256)

    def __post_init__(self) -> None:
        self.sha = self.sha or hashlib.sha1(self.repo_id.encode()).hexdigest()

    def summary(self) -> dict[str, Any]:
        tags = list(self.tags) + ([f"license:{self.license}"] if self.license else [])
        return {"_id": self.sha[:24], "id": self.repo_id, "modelId": self.repo_id,
                "author": self.repo_id.split("/")[0], "downloads": self.downloads, "likes": self.likes,
                "trendingScore": self.trending, "lastModified": self.last_modified, "private": False,
                "gated": self.gated, "tags": tags, "library_name": "gguf" if "gguf" in self.tags else None,
                "createdAt": self.last_modified, "gguf": self.gguf}

    def sibling(self, name: str, with_blobs: bool) -> dict[str, Any]:
        item: dict[str, Any] = {"rfilename": name}
        if with_blobs:
            hosted = self.files[name]
            item.update(size=hosted.size, blobId=hosted.blob_id)
            if hosted.lfs and self.lfs_metadata:
                item["lfs"] = {"sha256": hosted.sha256, "size": hosted.size, "pointerSize": 135}
        return item

    def tree_entry(self, name: str) -> dict[str, Any]:
        hosted = self.files[name]
        item: dict[str, Any] = {"type": "file", "oid": hosted.blob_id, "size": hosted.size, "path": name}
        if hosted.lfs and self.lfs_metadata:
            item["lfs"] = {"oid": hosted.sha256, "size": hosted.size, "pointerSize": 135}
        return item


@dataclass
class Served:
    """One request as the server saw it (tests assert on what was re-sent)."""

    method: str
    path: str
    status: int
    range_start: int | None = None
    bytes_sent: int = 0
    authorization: bool = False


@dataclass
class Faults:
    """What to get wrong, set per test."""

    fail: list[list[Any]] = field(default_factory=list)  # [substring of the path, status, times left]
    drop_after: dict[str, int] = field(default_factory=dict)  # filename -> cut the body after N bytes (once)
    drop_every: dict[str, int] = field(default_factory=dict)  # filename -> cut the body after N bytes, every time
    ignore_range: bool = False  # answer ranged GETs with 200 and the whole file, as some servers and proxies do
    overlong: dict[str, int | None] = field(default_factory=dict)  # filename -> junk after the file (None: endless)
    short_cdn: dict[str, bytes] = field(default_factory=dict)  # filename -> the CDN answers 200 with these bytes
    garbage_json: bool = False
    throttle_bps: int | None = None  # slow the CDN down so a test can interrupt a transfer
    token: str = "hf_test_token"  # the token a gated repo accepts


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that hang up (a paused or killed download) are part of the tests, not server errors.
        log.debug("hubserver: client %s went away", client_address)


class HubServer:
    """The loopback Hub: add repos, start, point HF_ENDPOINT at `url`; the CDN lives on `localhost` (another host)."""

    def __init__(self) -> None:
        self.repos: dict[str, HostedRepo] = {}
        self.faults = Faults()
        self.served: list[Served] = []
        self.lock = threading.Lock()
        self.page_size = 2
        # Behave like olah, a self-hosted mirror: repo info only at /api/models/{repo}/revision/{rev} (the bare
        # /api/models/{repo} is FastAPI's 404), siblings without sizes or LFS data; tree and paths-info have them.
        self.olah = False
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- setup -------------------------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: dict[str, bytes | Path], **kwargs: Any) -> HostedRepo:
        hosted = {name: HostedFile(data=content) if isinstance(content, bytes) else HostedFile(path=Path(content))
                  for name, content in files.items()}
        for name, item in hosted.items():
            item.lfs = name.endswith(".gguf") or item.size > 10_000_000
        repo = HostedRepo(repo_id, hosted, **kwargs)
        self.repos[repo_id] = repo
        return repo

    def start(self) -> HubServer:
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn_url(self) -> str:
        # Another host name for the same server, so clients see a cross-host redirect like the real CDN.
        return f"http://localhost:{self.port}"

    def file_requests(self, filename: str | None = None) -> list[Served]:
        """The CDN GETs that carried file bytes."""
        with self.lock:
            return [s for s in self.served if s.method == "GET" and s.path.startswith("/cdn/")
                    and (filename is None or s.path.endswith("/" + quote(filename, safe="")))]

    def take_fault(self, path: str) -> int | None:
        with self.lock:
            for entry in self.faults.fail:
                if entry[0] in path and entry[2] > 0:
                    entry[2] -= 1
                    return int(entry[1])
        return None


def _make_handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            log.debug("hubserver: " + format, *args)

        # --- helpers ---------------------------------------------------------------------------------------

        def _record(self, status: int, *, range_start: int | None = None, sent: int = 0) -> Served:
            item = Served(self.command, urlsplit(self.path).path, status, range_start, sent,
                          "authorization" in {k.lower() for k in self.headers.keys()})
            with hub.lock:
                hub.served.append(item)
            return item

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            # Recorded before the body goes out, so a client that has its answer always finds it in the log.
            self._record(status, sent=0 if self.command == "HEAD" else len(body))
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, payload: Any, headers: dict[str, str] | None = None) -> None:
            body = b"{\"id\": [garbage" if hub.faults.garbage_json else json.dumps(payload).encode()
            self._send(200, body, headers)

        def _error(self, status: int, code: str | None, message: str, extra: dict[str, str] | None = None) -> None:
            headers = {"X-Error-Message": message, **(extra or {})}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, json.dumps({"error": message}).encode(), headers)

        def _authorized(self, repo: HostedRepo) -> bool:
            if not repo.gated:
                return True
            return self.headers.get("Authorization", "") == f"Bearer {hub.faults.token}"

        def _find_repo(self, parts: list[str]) -> tuple[HostedRepo | None, list[str]]:
            if len(parts) >= 2 and "/".join(parts[:2]) in hub.repos:
                return hub.repos["/".join(parts[:2])], parts[2:]
            return None, parts

        # --- routes ----------------------------------------------------------------------------------------

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            self._route()

        def do_GET(self) -> None:  # noqa: N802
            self._route()

        def do_POST(self) -> None:  # noqa: N802
            self._route()

        def _route(self) -> None:
            split = urlsplit(self.path)
            path = unquote(split.path)
            query = parse_qs(split.query)
            status = hub.take_fault(path)
            if status is not None:
                self._error(status, None, f"injected {status}")
                return
            if path == "/api/models":
                self._search(query)
            elif path.startswith("/api/models/"):
                self._api_repo(path[len("/api/models/"):].split("/"), query)
            elif path.startswith("/cdn/"):
                self._cdn(split.path[len("/cdn/"):])
            elif "/resolve/" in path:
                self._resolve(path)
            else:
                self._error(404, None, "Not found")

        def _search(self, query: dict[str, list[str]]) -> None:
            repos = list(hub.repos.values())
            if "gguf" in query.get("filter", []):
                repos = [r for r in repos if "gguf" in r.tags]
            if query.get("search"):
                needle = query["search"][0].lower()
                repos = [r for r in repos if needle in r.repo_id.lower()]
            if query.get("author"):
                repos = [r for r in repos if r.repo_id.split("/")[0] == query["author"][0]]
            key = {"downloads": "downloads", "likes": "likes", "trendingScore": "trending",
                   "lastModified": "last_modified", "createdAt": "last_modified"}.get(query.get("sort", [""])[0])
            if key:
                repos.sort(key=lambda r: getattr(r, key), reverse=True)
            limit = int(query.get("limit", [str(hub.page_size)])[0])
            offset = int(query.get("cursor", ["0"])[0])
            page = repos[offset:offset + limit]
            headers = {}
            if offset + limit < len(repos):
                rest = {k: v for k, v in query.items() if k != "cursor"}
                params = "&".join(f"{k}={quote(item)}" for k, values in rest.items() for item in values)
                headers["Link"] = f'<{hub.url}/api/models?{params}&cursor={offset + limit}>; rel="next"'
            self._json([r.summary() for r in page], headers)

        def _api_repo(self, parts: list[str], query: dict[str, list[str]]) -> None:
            repo, rest = self._find_repo(parts)
            if repo is None:
                self._error(401, "RepoNotFound", "Repository not found")
                return
            revision = rest[:1] == ["revision"]
            if revision:
                rest = rest[2:]
            if not rest:
                if hub.olah and not revision:
                    self._send(404, b'{"detail":"Not Found"}')
                    return
                info = repo.summary()
                info.update(sha=repo.sha, cardData={"license": repo.license} if repo.license else None,
                            siblings=[repo.sibling(n, "blobs" in query and not hub.olah) for n in repo.files])
                self._json(info)
            elif rest[0] == "tree":
                prefix = "/".join(rest[2:])
                self._json([repo.tree_entry(n) for n in repo.files if n.startswith(prefix)])
            elif rest[0] == "paths-info" and self.command == "POST":
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                wanted = form.get("paths", [])
                self._json([repo.tree_entry(n) for n in wanted if n in repo.files])
            else:
                self._error(404, None, "Not found")

        def _resolve(self, path: str) -> None:
            repo_part, _, tail = path.lstrip("/").partition("/resolve/")
            repo = hub.repos.get(repo_part)
            if repo is None:
                self._error(401, "RepoNotFound", "Repository not found")
                return
            revision, _, filename = tail.partition("/")
            commit = {"X-Repo-Commit": repo.sha}
            if revision not in ("main", repo.sha):
                self._error(404, "RevisionNotFound", "Revision not found", commit)
                return
            if not self._authorized(repo):
                status = 403 if self.headers.get("Authorization") else 401
                self._error(status, "GatedRepo", f"Access to model {repo.repo_id} is restricted.", commit)
                return
            hosted = repo.files.get(filename)
            if hosted is None:
                self._error(404, "EntryNotFound", "Entry not found", commit)
                return
            if hosted.lfs and repo.lfs_metadata:
                location = f"{hub.cdn_url}/cdn/{quote(repo.repo_id, safe='')}/{quote(filename, safe='')}?sig=x"
                self._send(302, b"", {"Location": location, "X-Linked-Size": str(hosted.size),
                                      "X-Linked-Etag": f'"{hosted.sha256}"', "ETag": f'"{hosted.blob_id}"',
                                      **commit})
                return
            # Small files (and a mirror without LFS metadata) come straight from the resolve URL.
            self._body(repo.repo_id, filename, hosted, {"ETag": f'"{hosted.blob_id}"', **commit})

        def _cdn(self, raw: str) -> None:
            repo_id, _, filename = (unquote(p) for p in raw.partition("/"))
            repo = hub.repos.get(repo_id)
            hosted = repo.files.get(filename) if repo else None
            if hosted is None:
                self._error(404, None, "No such blob")
                return
            if filename in hub.faults.short_cdn:  # a CDN host that answers 200 with a few bytes, not the file
                self._send(200, hub.faults.short_cdn[filename], content_type="application/octet-stream")
                return
            self._body(repo_id, filename, hosted, {"ETag": f'"{hosted.sha256}"'})

        def _body(self, repo_id: str, filename: str, hosted: HostedFile, headers: dict[str, str]) -> None:
            size = hosted.size
            start, end, status = 0, size - 1, 200
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if match and not hub.faults.ignore_range:
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                if start >= size:
                    self._error(416, None, "Range not satisfiable", {"Content-Range": f"bytes */{size}"})
                    return
                status = 206
                headers = {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}
            junk = hub.faults.overlong.get(filename, 0) if self.command == "GET" else 0
            self.send_response(status)
            if junk == 0:
                self.send_header("Content-Length", str(end - start + 1))
            else:  # no length: the body ends when the server closes the connection
                self.send_header("Connection", "close")
                self.close_connection = True
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            record = self._record(status, range_start=start)
            if self.command == "HEAD":
                return
            cut = hub.faults.drop_after.pop(filename, hub.faults.drop_every.get(filename)) \
                if self.command == "GET" else None
            self._stream(hosted, start, end + 1, record, cut)
            if junk != 0 and (cut is None or cut >= end + 1 - start):
                self._junk(record, junk)

        def _junk(self, record: Served, count: int | None) -> None:
            # A broken server or proxy that keeps sending after the file; "endless" stops at 64 MiB so a client
            # that never stops cannot hang the test run.
            left = 64 << 20 if count is None else count
            block = b"\xa5" * (64 << 10)
            try:
                while left > 0:
                    chunk = block[:left]
                    record.bytes_sent += len(chunk)
                    self.wfile.write(chunk)
                    left -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _stream(self, hosted: HostedFile, start: int, stop: int, record: Served, cut: int | None) -> None:
            limit = stop if cut is None else min(stop, start + cut)
            throttle = hub.faults.throttle_bps
            try:
                if hosted.path is not None and hosted.served is None and throttle is None:
                    # sendfile keeps the server far faster than any client, so a benchmark measures the client.
                    with hosted.path.open("rb") as handle:
                        offset = start
                        while offset < limit:
                            # Counted before sending, so a client that has the bytes finds them in the log.
                            want = min(limit - offset, 8 * _BLOCK)
                            record.bytes_sent += want
                            sent = os.sendfile(self.connection.fileno(), handle.fileno(), offset, want)
                            record.bytes_sent -= want - sent
                            if sent == 0:
                                break
                            offset += sent
                else:
                    data = hosted.served if hosted.served is not None else (
                        hosted.data if hosted.data is not None else hosted.path.read_bytes())  # type: ignore[union-attr]
                    view = memoryview(data)
                    step = _BLOCK if throttle is None else max(1024, throttle // 20)
                    offset = start
                    while offset < limit:
                        chunk = view[offset:min(limit, offset + step)]
                        record.bytes_sent += len(chunk)
                        self.wfile.write(chunk)
                        offset += len(chunk)
                        if hub.faults.throttle_bps:  # read each time, so a test can lift it mid-transfer
                            time.sleep(len(chunk) / hub.faults.throttle_bps)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return
            if cut is not None and limit < stop:
                # A dropped connection: stop mid-body, the client sees fewer bytes than Content-Length.
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    return Handler


def make_gguf(path: Path, *, name: str = "tiny", arch: str = "llama", n_tensors: int = 2,
              tensor_elems: int = 1024, extra_bytes: int = 0, file_type: int = 15) -> Path:
    """A small, valid GGUF made with the `gguf` package (F32 tensors; `extra_bytes` pads the last tensor)."""
    import gguf  # the test extra; imported here so the server module loads without it
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_context_length(2048)
    writer.add_embedding_length(64)
    writer.add_block_count(2)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_file_type(file_type)
    rng = np.random.default_rng(len(name))
    for index in range(n_tensors):
        count = tensor_elems + (extra_bytes // 4 if index == n_tensors - 1 else 0)
        writer.add_tensor(f"blk.{index}.weight", rng.standard_normal((1, count)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
