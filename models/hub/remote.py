"""Read a GGUF header straight off the Hub with HTTP range requests, through huggingface_hub's session and headers."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from huggingface_hub import constants, hf_hub_url
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from models.errors import HubError
from models.gguf.reader import GGUFHeader, HeaderLimits, read_gguf_header
from models.hub.reach import require_hub
from models.hub.repos import call_hub

log = logging.getLogger(__name__)

_FIRST_BLOCK = 1 << 20  # most headers fit in 1 MiB: one request
_MAX_BLOCK = 16 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class HttpRangeSource:
    """A ByteSource over HTTP: reads ahead in growing blocks so a GGUF header costs one or two requests."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None, session: object | None = None,
                 first_block: int = _FIRST_BLOCK, max_block: int = _MAX_BLOCK,
                 max_transfer: int = HeaderLimits.max_header_bytes) -> None:
        self.url = url
        self.max_transfer = max_transfer  # bytes this source may pull over the network in all, whatever the server does
        self.ignores_range = False
        self._headers = dict(headers or {})
        # huggingface_hub's shared client: its proxy, certificate and offline settings apply here too.
        self._session = session if session is not None else get_session()
        self._block = first_block
        self._max_block = max_block
        self._size: int | None = None
        self._buf = b""
        self._buf_start = 0
        self.requests = 0
        self.bytes_fetched = 0

    @property
    def size(self) -> int | None:
        if self._size is None and self.requests == 0:
            self._fetch(0, self._block)  # the first block also tells the size (Content-Range)
        return self._size

    def read(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0:
            raise ValueError("negative offset or size")
        end = offset + size
        if self._size is not None:
            end = min(end, self._size)
        if offset >= end:
            return b""
        if not (self._buf_start <= offset and end <= self._buf_start + len(self._buf)):
            keep_from = offset if self._buf_start <= offset <= self._buf_start + len(self._buf) else None
            if keep_from is not None:
                kept = self._buf[offset - self._buf_start:]
                start = offset + len(kept)
            else:
                kept, start = b"", offset
            fetched = self._fetch(start, max(end - start, self._block), replace=False)
            self._buf, self._buf_start = kept + fetched, offset
        return self._buf[offset - self._buf_start:end - self._buf_start]

    def _fetch(self, start: int, length: int, *, replace: bool = True) -> bytes:
        # A server that ignores Range resends the file from byte 0 each time: that prefix is what it costs.
        cost = start + length if self.ignores_range else length
        if self.bytes_fetched + cost > self.max_transfer:
            why = " because the server ignores HTTP range requests and sends the file from its start each time" \
                if self.ignores_range else ""
            raise HubError(f"Reading this GGUF header would fetch more than {self.max_transfer / 1e6:.0f} MB{why}; "
                           "stopped there. Download the file to read it instead.")
        headers = {**self._headers, "Range": f"bytes={start}-{start + length - 1}",
                   "Accept-Encoding": "identity"}
        # Streamed, never `.content`: a server that ignores Range would otherwise put the whole file in memory.
        with self._session.stream("GET", self.url, headers=headers,  # type: ignore[attr-defined]
                                  timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as response:
            self.requests += 1
            if response.status_code == 416:
                self._size = self._size if self._size is not None else start
                return b""
            if response.status_code >= 400:
                response.read()  # an error body is small; hf_raise_for_status reads its message
            hf_raise_for_status(response)
            self._follow(str(response.url))
            if response.status_code == 206:
                match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                if not match or int(match.group(1)) != start:
                    raise HubError(
                        f"The server answered a range request with {response.headers.get('Content-Range')!r}.")
                if match.group(3) != "*":
                    self._size = int(match.group(3))
                data = _read_at_most(response, length)
                self.bytes_fetched += len(data)
            else:
                # The whole file from byte 0: read as far as this block needs, then hang up.
                if not self.ignores_range:
                    log.info("%s ignores HTTP range requests; reading only the start of its answer", self.url)
                self.ignores_range = True
                announced = response.headers.get("Content-Length", "")
                prefix = _read_at_most(response, start + length)
                self.bytes_fetched += len(prefix)
                if announced.isdigit():
                    self._size = int(announced)
                elif len(prefix) < start + length:
                    self._size = len(prefix)  # the body ended: that is the file's size
                data = prefix[start:]
        # After the first block, read-ahead restarts at half of it and doubles per request: a header just past
        # 1 MiB then costs two requests and under 2 MB, and a 10 MB vocabulary still only a handful.
        self._block = self._block // 2 if self.requests == 1 else min(self._block * 2, self._max_block)
        if replace:
            self._buf, self._buf_start = data, start
        return data

    def _follow(self, final_url: str) -> None:
        if final_url == self.url:
            return
        # Go straight to the CDN next time (one request, not a redirect plus a request); the signed
        # URL must not carry the Hub token to another host.
        if urlsplit(final_url).netloc != urlsplit(self.url).netloc:
            self._headers.pop("authorization", None)
            self._headers.pop("Authorization", None)
        self.url = final_url


def _read_at_most(response: object, limit: int) -> bytes:
    """Up to `limit` bytes of a streamed body; the rest is never read (closing the response drops it)."""
    out = bytearray()
    for chunk in response.iter_bytes():  # type: ignore[attr-defined]
        out += chunk[:limit - len(out)]
        if len(out) >= limit:
            break
    return bytes(out)


def read_remote_header(repo_id: str, filename: str, *, revision: str | None = None, token: str | bool | None = None,
                       limits: HeaderLimits | None = None) -> GGUFHeader:
    """The GGUF header of a file on the Hub, read without downloading it; raises ModelFileError or HubError."""
    require_hub(f"{repo_id}/{filename}")
    url = hf_hub_url(repo_id, filename, revision=revision)
    source = HttpRangeSource(url, headers=build_hf_headers(token=token),
                             max_transfer=(limits or HeaderLimits()).max_header_bytes)
    header = call_hub(f"{repo_id}/{filename}", lambda: read_gguf_header(source, limits=limits), repo_id=repo_id)
    log.debug("Remote header of %s/%s: %d requests, %d bytes", repo_id, filename, source.requests,
              source.bytes_fetched)
    if header.is_split:  # a split model is judged whole: every part's header, each a request or two like this one
        header = _read_other_shards(header, repo_id, filename, revision=revision, token=token, limits=limits)
    return header


def _read_other_shards(first: GGUFHeader, repo_id: str, filename: str, *, revision: str | None,
                       token: str | bool | None, limits: HeaderLimits | None) -> GGUFHeader:
    from models.gguf.split import read_split_headers

    def open_shard(name: str) -> HttpRangeSource:
        # Later parts hold a tensor table and no vocabulary: a quarter of the first block covers most of them.
        return HttpRangeSource(hf_hub_url(repo_id, name, revision=revision), headers=build_hf_headers(token=token),
                               first_block=_FIRST_BLOCK // 4, max_transfer=(limits or HeaderLimits()).max_header_bytes)

    return call_hub(f"{repo_id}/{filename}", lambda: read_split_headers(first, filename, open_shard, limits=limits),
                    repo_id=repo_id)

