"""The reference log-probabilities for KL divergence, in llama-perplexity's --kl-divergence-base file format.

The file is byte-compatible with what `llama-perplexity --kl-divergence-base FILE` writes and `--kl-divergence`
reads, so either tool can use the other's reference:

    "_logits_"                       8 bytes, magic
    uint32  n_ctx                    the chunk size the reference was computed with
    int32   n_vocab
    int32   n_chunk
    int32   tokens[n_ctx * n_chunk]  the evaluated text's tokens (what a candidate must match exactly)
    then, per chunk, one row per scored position (n_ctx - 1 - n_ctx/2 rows), each row_len(n_vocab) uint16:
        float32 scale, float32 min_log_prob      (the first 4 uint16)
        uint16  q[n_vocab] (+1 pad to even)      log p = scale * q + min_log_prob; q = 0 for log p at or
                                                 below max - 16 (ignored in the KLD, as llama.cpp does)

Tokenometer appends a trailer that llama-perplexity never reads (it stops after the last row):
    "_tkmeta_" uint32 length, then that many bytes of JSON (model, text, sha256 of the tokens, the reference's
    own perplexity). A file without it (written by llama-perplexity) is read all the same.

About 2 * (n_vocab + 4) bytes per scored token (~96 KiB for a 49k vocabulary). Rows are written and read one
chunk at a time, so memory stays at one chunk's rows whatever the text's length.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from models.errors import BenchmarkError

log = logging.getLogger(__name__)

MAGIC = b"_logits_"
TRAILER_MAGIC = b"_tkmeta_"
_HEADER = struct.Struct("<8sIii")
_TRAILER_HEAD = struct.Struct("<8sI")
# llama.cpp ignores reference probabilities below e^-16 of the top one.
LOG_RANGE = 16.0


class ReferenceFileError(BenchmarkError):
    """A reference file cannot be used; the message says why."""


def row_len(n_vocab: int) -> int:
    """uint16 values per scored position: two float32 (scale, min_log_prob) and the vocabulary, padded to even."""
    return 2 * ((n_vocab + 1) // 2) + 4


def scored_per_chunk(n_ctx: int) -> int:
    """Positions scored in one chunk: the second half, less the last (it has no next token to predict)."""
    return n_ctx - 1 - n_ctx // 2


def tokens_sha256(tokens: Sequence[int] | np.ndarray) -> str:
    return hashlib.sha256(np.asarray(tokens, dtype="<i4").tobytes()).hexdigest()


def expected_size(n_ctx: int, n_vocab: int, n_chunk: int) -> int:
    """Bytes of the header, the tokens and every chunk's rows (without Tokenometer's trailer)."""
    return _HEADER.size + 4 * n_ctx * n_chunk + 2 * n_chunk * scored_per_chunk(n_ctx) * row_len(n_vocab)


def quantize_rows(logits: np.ndarray, targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """llama-perplexity's log_softmax(..., uint16 *): each row of float32 logits as one uint16 reference row.

    With `targets`, also each row's NLL of its target as that function returns it (float32 arithmetic), from the
    same max and sum of exps: one pass over the logits fewer than computing it apart.
    """
    n_rows, n_vocab = logits.shape
    out = np.empty((n_rows, row_len(n_vocab)), dtype=np.uint16)
    out[:, 4 + n_vocab:] = 0  # the pad to an even count
    max_logit = logits.max(axis=1)
    min_logit = np.maximum(logits.min(axis=1), max_logit - np.float32(LOG_RANGE))
    work = np.subtract(logits, max_logit[:, None])
    sum_exp = np.exp(work, out=work).sum(axis=1, dtype=np.float64)
    log_sum_exp = np.log(sum_exp).astype(np.float32)
    min_log_prob = (min_logit - max_logit - log_sum_exp).astype(np.float32)
    scale = ((max_logit - min_logit) / np.float32(65535.0)).astype(np.float32)
    head = out[:, :4].view(np.float32)  # two float32 in the first four uint16, as llama.cpp casts them
    head[:, 0] = scale
    head[:, 1] = min_log_prob
    with np.errstate(divide="ignore"):
        inv_scale = np.where(scale != 0, np.float32(1.0) / scale, np.float32(0.0)).astype(np.float32)
    np.subtract(logits, min_logit[:, None], out=work)
    np.multiply(work, inv_scale[:, None], out=work)
    # nearest_int rounds half to even, as np.rint does; llama.cpp stores 0 at or below min_logit, where the
    # scaled value is <= 0 (so rounds to 0 or below, clipped to 0 here).
    np.rint(work, out=work)
    np.maximum(work, np.float32(0.0), out=work)
    out[:, 4:4 + n_vocab] = work
    if targets is None:
        return out, None
    nll = (max_logit + log_sum_exp - logits[np.arange(n_rows), targets]).astype(np.float32)
    return out, nll


@dataclass
class ReferenceInfo:
    """A reference file's header and trailer, read without its rows."""

    path: Path
    n_ctx: int
    n_vocab: int
    n_chunk: int
    tokens: np.ndarray  # int32, n_ctx * n_chunk
    meta: dict[str, Any] = field(default_factory=dict)  # Tokenometer's trailer; {} for llama-perplexity's files

    @property
    def token_sha256(self) -> str:
        return tokens_sha256(self.tokens)

    def describe(self) -> str:
        source = self.meta.get("model") or "a model (written by llama-perplexity)"
        return f"{self.path.name}: {source}, {self.n_chunk} chunks of {self.n_ctx} tokens"


def read_reference(path: Path) -> ReferenceInfo:
    """The header, tokens and trailer of a reference file; raises ReferenceFileError if it is not whole."""
    try:
        size = path.stat().st_size
        with path.open("rb") as stream:
            head = stream.read(_HEADER.size)
            if len(head) < _HEADER.size or not head.startswith(MAGIC):
                raise ReferenceFileError(f"{path.name} is not a reference log-probability file (no '_logits_' "
                                      f"header); make one with `tokenometer quality REF_MODEL --save-ref FILE`.")
            _, n_ctx, n_vocab, n_chunk = _HEADER.unpack(head)
            if n_ctx < 4 or n_vocab < 1 or n_chunk < 1:
                raise ReferenceFileError(f"{path.name} has an impossible header (n_ctx {n_ctx}, n_vocab {n_vocab}, "
                                      f"{n_chunk} chunks).")
            whole = expected_size(n_ctx, n_vocab, n_chunk)
            if size < whole:
                rows = 2 * scored_per_chunk(n_ctx) * row_len(n_vocab)
                have = max(0, (size - _HEADER.size - 4 * n_ctx * n_chunk) // rows)
                raise ReferenceFileError(
                    f"{path.name} is truncated: {size:,} bytes where its header promises {whole:,} "
                    f"({have} of {n_chunk} chunks present). Compute the reference again.")
            tokens = np.frombuffer(stream.read(4 * n_ctx * n_chunk), dtype="<i4").astype(np.int32)
            meta: dict[str, Any] = {}
            if size > whole:
                stream.seek(whole)
                meta = _read_trailer(path, stream, size - whole)
    except OSError as error:
        raise ReferenceFileError(f"Cannot read the reference file {path}: {error.strerror or error}") from error
    return ReferenceInfo(path=path, n_ctx=n_ctx, n_vocab=n_vocab, n_chunk=n_chunk, tokens=tokens, meta=meta)


def _read_trailer(path: Path, stream: BinaryIO, extra: int) -> dict[str, Any]:
    head = stream.read(_TRAILER_HEAD.size)
    if len(head) == _TRAILER_HEAD.size:
        magic, length = _TRAILER_HEAD.unpack(head)
        if magic == TRAILER_MAGIC and length == extra - _TRAILER_HEAD.size:
            try:
                meta = json.loads(stream.read(length).decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                meta = None
            if isinstance(meta, dict):
                return meta
    raise ReferenceFileError(f"{path.name} has {extra:,} unexpected bytes after its last chunk: not a reference "
                          f"file as written by Tokenometer or llama-perplexity.")


class ReferenceReader:
    """Streams one chunk's rows at a time from a checked reference file."""

    def __init__(self, info: ReferenceInfo) -> None:
        self.info = info
        self._stream: BinaryIO = info.path.open("rb")
        self._row_bytes = 2 * row_len(info.n_vocab)
        self._stream.seek(_HEADER.size + 4 * info.n_ctx * info.n_chunk)

    def next_chunk(self) -> np.ndarray:
        """The next chunk's rows, (scored_per_chunk, row_len) uint16."""
        n_rows = scored_per_chunk(self.info.n_ctx)
        data = self._stream.read(n_rows * self._row_bytes)
        if len(data) != n_rows * self._row_bytes:  # the file shrank after it was checked
            raise ReferenceFileError(f"{self.info.path.name} ended in the middle of a chunk.")
        return np.frombuffer(data, dtype="<u2").reshape(n_rows, row_len(self.info.n_vocab))

    def close(self) -> None:
        self._stream.close()


class ReferenceWriter:
    """Writes a reference as it is computed, chunk by chunk, to FILE.part; `finish` renames it into place.

    A run that fails or is cancelled leaves no file under the final name, so a half-written reference can
    never be taken for a whole one.
    """

    def __init__(self, path: Path, *, n_ctx: int, n_vocab: int, tokens: np.ndarray) -> None:
        if len(tokens) % n_ctx:
            raise ValueError("the reference's tokens must be whole chunks")
        self.path = path
        self.part = path.with_name(path.name + ".part")
        self.n_ctx, self.n_vocab, self.n_chunk = n_ctx, n_vocab, len(tokens) // n_ctx
        self.written = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._stream: BinaryIO | None = self.part.open("wb")
        self._stream.write(_HEADER.pack(MAGIC, n_ctx, n_vocab, self.n_chunk))
        self._stream.write(np.asarray(tokens, dtype="<i4").tobytes())

    def write_chunk(self, rows: np.ndarray) -> None:
        assert self._stream is not None
        if rows.shape != (scored_per_chunk(self.n_ctx), row_len(self.n_vocab)):
            raise ValueError(f"a chunk has {scored_per_chunk(self.n_ctx)} rows of {row_len(self.n_vocab)}, "
                             f"got {rows.shape}")
        self._stream.write(np.ascontiguousarray(rows, dtype="<u2").tobytes())
        self.written += 1

    def finish(self, meta: dict[str, Any]) -> Path:
        """Append the trailer and move the file into place; every chunk must have been written."""
        assert self._stream is not None
        if self.written != self.n_chunk:
            raise ValueError(f"{self.written} of {self.n_chunk} chunks written")
        body = json.dumps(meta, sort_keys=True).encode("utf-8")
        self._stream.write(_TRAILER_HEAD.pack(TRAILER_MAGIC, len(body)) + body)
        self._stream.close()
        self._stream = None
        os.replace(self.part, self.path)
        return self.path

    def abort(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self.part.unlink(missing_ok=True)
