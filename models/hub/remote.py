"""Read a GGUF header straight off the Hub with HTTP range requests, through huggingface_hub's session and headers."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from huggingface_hub import constants, hf_hub_url
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from models.errors import HubError
from models.gguf.reader import GGUFHeader, HeaderLimits, read_gguf_header
from models.hub.repos import call_hub

log = logging.getLogger(__name__)

_FIRST_BLOCK = 1 << 20  # most headers fit in 1 MiB: one request
_MAX_BLOCK = 16 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class HttpRangeSource:
    """A ByteSource over HTTP: reads ahead in growing blocks so a GGUF header costs one or two requests."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None, session: object | None = None,
                 first_block: int = _FIRST_BLOCK, max_block: int = _MAX_BLOCK) -> None:
        self.url = url
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
        headers = {**self._headers, "Range": f"bytes={start}-{start + length - 1}",
                   "Accept-Encoding": "identity"}
        response = self._session.get(self.url, headers=headers, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT)  # type: ignore[attr-defined]
        self.requests += 1
        if response.status_code == 416:
            self._size = self._size if self._size is not None else start
            return b""
        hf_raise_for_status(response)
        final_url = str(response.url)
        if final_url != self.url:
            # Go straight to the CDN next time (one request, not a redirect plus a request); the signed
            # URL must not carry the Hub token to another host.
            if urlsplit(final_url).netloc != urlsplit(self.url).netloc:
                self._headers.pop("authorization", None)
                self._headers.pop("Authorization", None)
            self.url = final_url
        data = response.content
        if response.status_code == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != start:
                raise HubError(f"The server answered a range request with {response.headers.get('Content-Range')!r}.")
            if match.group(3) != "*":
                self._size = int(match.group(3))
        else:
            # A server that ignores Range sends the whole file: keep only what was asked for.
            self._size = len(data)
            data = data[start:start + length]
        self.bytes_fetched += len(data)
        # After the first block, read-ahead restarts at half of it and doubles per request: a header just past
        # 1 MiB then costs two requests and under 2 MB, and a 10 MB vocabulary still only a handful.
        self._block = self._block // 2 if self.requests == 1 else min(self._block * 2, self._max_block)
        if replace:
            self._buf, self._buf_start = data, start
        return data


def read_remote_header(repo_id: str, filename: str, *, revision: str | None = None, token: str | bool | None = None,
                       limits: HeaderLimits | None = None) -> GGUFHeader:
    """The GGUF header of a file on the Hub, read without downloading it; raises ModelFileError or HubError."""
    url = hf_hub_url(repo_id, filename, revision=revision)
    source = HttpRangeSource(url, headers=build_hf_headers(token=token))
    header = call_hub(f"{repo_id}/{filename}", lambda: read_gguf_header(source, limits=limits))
    log.debug("Remote header of %s/%s: %d requests, %d bytes", repo_id, filename, source.requests,
              source.bytes_fetched)
    return header

