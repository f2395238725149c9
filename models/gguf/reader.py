"""A strict, bounded GGUF header reader for local files and any ranged byte source (HTTP included)."""

from __future__ import annotations

import logging
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import ModelFileError
from models.gguf.byte_source import ByteSource, FileSource
from models.gguf.types import FILE_TYPES, GGML_TYPE_IDS, GGML_TYPES

log = logging.getLogger(__name__)


GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
INT64_MAX = (1 << 63) - 1

# GGUF value type id -> (name, struct format or None for string/array).
_VALUE_TYPES: dict[int, tuple[str, str | None]] = {
    0: ("uint8", "<B"), 1: ("int8", "<b"), 2: ("uint16", "<H"), 3: ("int16", "<h"), 4: ("uint32", "<I"),
    5: ("int32", "<i"), 6: ("float32", "<f"), 7: ("bool", "<?"), 8: ("string", None), 9: ("array", None),
    10: ("uint64", "<Q"), 11: ("int64", "<q"), 12: ("float64", "<d"),
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class HeaderLimits:
    """Bounds that stop a hostile header early; generous for every real model seen so far."""

    max_kv_count: int = 65_536
    max_tensor_count: int = 1_000_000
    max_string_length: int = 16 * 1024 * 1024  # chat templates are ~100 kB; 2^63 is an attack
    max_array_length: int = 16 * 1024 * 1024  # vocabularies reach 262k tokens, merges ~1M
    max_depth: int = 1  # ggml's reader refuses arrays of arrays, so one level is all a loadable file has
    max_header_bytes: int = 256 * 1024 * 1024
    max_tensor_name: int = 63  # GGML_MAX_NAME - 1
    keep_array_items: int = 4096  # longer arrays are summarised, not stored


@dataclass
class ArraySummary:
    """A long metadata array: its type and length are kept, its contents only up to a few items."""

    element_type: str
    count: int
    head: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return self.count


@dataclass
class TensorInfo:
    """One entry of the tensor table; n_bytes follows ggml's block sizes."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    type_name: str
    offset: int  # relative to GGUFHeader.tensor_data_offset
    n_elements: int
    n_bytes: int
    shard: int = 0  # which file of a split model holds it (0 for a single file)


@dataclass
class GGUFHeader:
    """Everything before the tensor data, plus the facts read from it that the app needs."""

    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo]
    architecture: str
    name: str
    n_params: int
    block_count: int
    context_length: int
    embedding_length: int
    head_count: int  # the largest per-layer value when the file stores a per-layer array
    head_count_kv: int
    file_type: int  # -1 when the file does not say (then file_type_name is guessed from the tensors)
    file_type_name: str
    tensor_data_offset: int
    bytes_read: int
    alignment: int = DEFAULT_ALIGNMENT
    head_count_per_layer: list[int] = field(default_factory=list)
    head_count_kv_per_layer: list[int] = field(default_factory=list)
    key_length: int = 0  # 0: not in the file (llama.cpp then uses embedding_length / head_count)
    value_length: int = 0
    sliding_window: int = 0
    expert_count: int = 0
    expert_used_count: int = 0
    vocab_size: int = 0
    split_count: int = 1
    split_index: int = 0
    split_tensors: int = 0  # split.tensors.count: the tensors of all shards together (0 when not split)
    file_size: int | None = None  # for a merged split model, all shards together
    tensor_bytes: int = 0

    def arch_value(self, key: str, default: Any = None) -> Any:
        """The metadata value `{architecture}.{key}`."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def is_split(self) -> bool:
        return self.split_count > 1


class _Cursor:
    """Sequential reads over a ByteSource in growing chunks, with every length checked before it is read."""

    def __init__(self, source: ByteSource, limits: HeaderLimits) -> None:
        self.source = source
        self.limits = limits
        self.size = source.size
        self.pos = 0
        self._buf = b""
        self._buf_start = 0
        self._chunk = 256 * 1024
        self.where = "the file header"

    def _fail_truncated(self, need: int) -> None:
        raise ModelFileError(f"Truncated GGUF file: it ends at byte {self.size if self.size is not None else self.pos} "
                             f"while reading {self.where} (needed {need} more bytes at offset {self.pos}).")

    def need(self, n: int) -> None:
        """Refuse before reading when n bytes would pass the header budget or the end of the file."""
        if self.pos + n > self.limits.max_header_bytes:
            raise ModelFileError(f"GGUF header is larger than the {self.limits.max_header_bytes} byte limit "
                                 f"(reading {self.where} at offset {self.pos} needs {n} more bytes).")
        if self.size is not None and self.pos + n > self.size:
            self._fail_truncated(n)

    def take(self, n: int) -> bytes:
        self.need(n)
        end = self.pos + n
        if end > self._buf_start + len(self._buf) or self.pos < self._buf_start:
            keep = self._buf[self.pos - self._buf_start:] if self._buf_start <= self.pos else b""
            start = self.pos + len(keep)
            want = max(end - start, self._chunk)
            data = self.source.read(start, want)
            self._chunk = min(self._chunk * 2, 8 * 1024 * 1024)
            self._buf, self._buf_start = keep + data, self.pos
            if len(self._buf) < n:
                self.size = self._buf_start + len(self._buf)
                self._fail_truncated(n)
        out = self._buf[self.pos - self._buf_start:end - self._buf_start]
        self.pos = end
        return out

    def skip(self, n: int) -> None:
        self.need(n)
        self.pos += n

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self, what: str) -> str:
        length = self.unpack("<Q")
        if length > self.limits.max_string_length:
            raise ModelFileError(f"GGUF {what} announces a string of {length} bytes at offset {self.pos - 8}; "
                                 f"the limit is {self.limits.max_string_length}.")
        return self.take(length).decode("utf-8", errors="replace")


    def strings(self, count: int, keep: int, key: str) -> list[str] | ArraySummary:
        """A string array read straight off the buffer: vocabularies hold 100k+ entries, so this loop is hot."""
        items: list[str] = []
        limit = self.limits.max_string_length
        unpack_from = struct.unpack_from
        for index in range(count):
            start = self.pos - self._buf_start
            if self._buf_start <= self.pos and start + 8 <= len(self._buf):
                length = unpack_from("<Q", self._buf, start)[0]
                if length <= limit and start + 8 + length <= len(self._buf) and \
                        self.pos + 8 + length <= self.limits.max_header_bytes:
                    if index < keep:
                        items.append(self._buf[start + 8:start + 8 + length].decode("utf-8", errors="replace"))
                    self.pos += 8 + length
                    continue
            # Slow path near a chunk boundary or on a bad length: the checked reader says what is wrong.
            value = self.string(f"element {index} of '{key}'")
            if index < keep:
                items.append(value)
        return items if count <= keep else ArraySummary("string", count, items[:16])


def _read_value(cur: _Cursor, value_type: int, key: str, depth: int) -> Any:
    if value_type not in _VALUE_TYPES:
        raise ModelFileError(f"GGUF key '{key}' has an unknown value type {value_type}.")
    if value_type == _STRING:
        return cur.string(f"value of '{key}'")
    if value_type != _ARRAY:
        return cur.unpack(_VALUE_TYPES[value_type][1])  # type: ignore[arg-type]
    if depth >= cur.limits.max_depth:
        raise ModelFileError(f"GGUF key '{key}' nests arrays deeper than {cur.limits.max_depth} levels.")
    element_type = cur.unpack("<I")
    count = cur.unpack("<Q")
    if element_type not in _VALUE_TYPES:
        raise ModelFileError(f"GGUF array '{key}' has an unknown element type {element_type}.")
    if element_type == _ARRAY and depth + 1 >= cur.limits.max_depth:
        # ggml's gguf reader refuses an array of arrays ("invalid GGUF type 9"), so llama.cpp cannot load the file.
        raise ModelFileError(f"GGUF key '{key}' is an array of arrays; llama.cpp's GGUF reader refuses nested "
                             "arrays.")
    type_name, fmt = _VALUE_TYPES[element_type]
    if count > cur.limits.max_array_length:
        raise ModelFileError(f"GGUF array '{key}' announces {count} elements; the limit is "
                             f"{cur.limits.max_array_length}.")
    keep = cur.limits.keep_array_items
    if fmt is not None:
        width = struct.calcsize(fmt)
        if count <= keep:
            raw = cur.take(width * count)
            return list(struct.unpack(f"<{count}{fmt[1]}", raw))
        head = list(struct.unpack(f"<{min(count, 16)}{fmt[1]}", cur.take(width * min(count, 16))))
        cur.skip(width * (count - len(head)))  # a remote source never fetches the skipped part
        return ArraySummary(type_name, count, head)
    if element_type == _STRING:
        cur.where = f"the strings of '{key}'"
        return cur.strings(count, keep, key)
    items: list[Any] = []
    for index in range(count):
        cur.where = f"element {index} of '{key}'"
        value = _read_value(cur, element_type, key, depth + 1)
        if index < keep:
            items.append(value)
    return items if count <= keep else ArraySummary(type_name, count, items[:16])


def _read_tensor(cur: _Cursor, index: int, limits: HeaderLimits) -> TensorInfo:
    cur.where = f"tensor info {index}"
    name = cur.string(f"tensor name {index}")
    if not name or len(name.encode()) > limits.max_tensor_name:
        raise ModelFileError(f"GGUF tensor {index} has an invalid name of {len(name.encode())} bytes "
                             f"(1 to {limits.max_tensor_name} allowed).")
    cur.where = f"tensor '{name}'"
    n_dims = cur.unpack("<I")
    if not 1 <= n_dims <= 4:
        raise ModelFileError(f"GGUF tensor '{name}' has {n_dims} dimensions; ggml allows 1 to 4.")
    shape = tuple(cur.unpack("<Q") for _ in range(n_dims))
    ggml_type = cur.unpack("<I")
    offset = cur.unpack("<Q")
    n_elements = 1
    for dim in shape:
        if dim > INT64_MAX:
            raise ModelFileError(f"GGUF tensor '{name}' has a negative or huge dimension in shape {shape}.")
        n_elements *= dim  # Python ints do not wrap, so the check below sees the true product
        if n_elements > INT64_MAX:
            raise ModelFileError(f"GGUF tensor '{name}' has shape {shape} whose element count overflows "
                                 "a 64-bit integer.")
    if ggml_type not in GGML_TYPES:
        raise ModelFileError(f"GGUF tensor '{name}' has unknown ggml type {ggml_type}.")
    type_name, block, type_size = GGML_TYPES[ggml_type]
    if shape[0] % block:
        raise ModelFileError(f"GGUF tensor '{name}' of type {type_name} has {shape[0]} elements per row, "
                             f"not a multiple of its block size {block}.")
    n_bytes = n_elements // block * type_size
    if n_bytes > INT64_MAX:
        raise ModelFileError(f"GGUF tensor '{name}' with shape {shape} is larger than 2^63 bytes.")
    return TensorInfo(name, shape, ggml_type, type_name, offset, n_elements, n_bytes)


def _as_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelFileError(f"GGUF key '{key}' should be an integer, got {type(value).__name__}.")
    return value


def _layer_bound(metadata: dict[str, Any], arch: str, n_layer: int, n_tensors: int) -> None:
    """Refuse a layer count the file's tensors cannot hold, before anything is allocated per layer.

    Every layer llama.cpp builds has tensors of its own, so a model has at least as many tensors as layers; a
    split model counts the tensors of all its shards (split.tensors.count), since one shard may hold few.
    """
    if n_layer < 0:
        raise ModelFileError(f"GGUF key '{arch}.block_count' is negative ({n_layer}).")
    total = metadata.get("split.tensors.count")
    split = isinstance(metadata.get("split.count"), int) and metadata["split.count"] > 1
    if split and isinstance(total, int) and not isinstance(total, bool) and total >= n_tensors:
        if total > HeaderLimits.max_tensor_count * 64:
            raise ModelFileError(f"GGUF split.tensors.count {total} is not a plausible number of tensors.")
        n_tensors = total
    if n_layer > n_tensors:
        raise ModelFileError(f"GGUF key '{arch}.block_count' says {n_layer} layers, but the file has only "
                             f"{n_tensors} tensors; every layer needs tensors of its own, so the file is corrupt.")


def _per_layer(metadata: dict[str, Any], key: str, n_layer: int) -> tuple[int, list[int]]:
    """llama.cpp's "scalar or per-layer array" keys: (largest value, one value per layer)."""
    value = metadata.get(key)
    if value is None:
        return 0, []
    if isinstance(value, (list, ArraySummary)):
        items = value.head if isinstance(value, ArraySummary) else value
        if len(value) != n_layer or isinstance(value, ArraySummary):
            raise ModelFileError(f"GGUF key '{key}' has {len(value)} per-layer values for {n_layer} layers.")
        layers = [_as_int(v, key) for v in items]
        return max(layers, default=0), layers
    scalar = _as_int(value, key)
    return scalar, [scalar] * n_layer


def _guess_file_type(tensors: list[TensorInfo]) -> str:
    # llama.cpp guesses from the most common type among the weight matrices when general.file_type is absent.
    counts = Counter(t.type_name for t in tensors if len(t.shape) >= 2)
    return f"{counts.most_common(1)[0][0]} (guessed)" if counts else "unknown"


def _build_header(version: int, metadata: dict[str, Any], tensors: list[TensorInfo], data_offset: int,
                  alignment: int, size: int | None) -> GGUFHeader:
    arch = metadata.get("general.architecture", "")
    arch = arch if isinstance(arch, str) else ""

    def arch_int(key: str) -> int:
        value = metadata.get(f"{arch}.{key}", 0)
        return _as_int(value, f"{arch}.{key}") if not isinstance(value, (list, ArraySummary)) else 0

    n_layer = arch_int("block_count")
    _layer_bound(metadata, arch, n_layer, len(tensors))
    head_count, heads = _per_layer(metadata, f"{arch}.attention.head_count", n_layer)
    head_count_kv, heads_kv = _per_layer(metadata, f"{arch}.attention.head_count_kv", n_layer)
    if not heads_kv and heads:  # llama.cpp: no head_count_kv means no grouping (n_head_kv = n_head)
        head_count_kv, heads_kv = head_count, list(heads)
    raw_ftype = metadata.get("general.file_type")
    file_type = raw_ftype if isinstance(raw_ftype, int) and not isinstance(raw_ftype, bool) else -1
    file_type_name = FILE_TYPES.get(file_type, f"type {file_type}") if file_type >= 0 else _guess_file_type(tensors)
    tokens = metadata.get("tokenizer.ggml.tokens")
    vocab_size = arch_int("vocab_size") or (len(tokens) if isinstance(tokens, (list, ArraySummary)) else 0)
    name = metadata.get("general.name", "")
    sliding = metadata.get(f"{arch}.attention.sliding_window", 0)
    split_count = metadata.get("split.count", 1)
    split_index = metadata.get("split.no", 0)
    split_tensors = metadata.get("split.tensors.count", 0)
    return GGUFHeader(
        version=version, metadata=metadata, tensors=tensors, architecture=arch,
        name=name if isinstance(name, str) else "", n_params=sum(t.n_elements for t in tensors),
        block_count=n_layer, context_length=arch_int("context_length"),
        embedding_length=arch_int("embedding_length"), head_count=head_count, head_count_kv=head_count_kv,
        file_type=file_type, file_type_name=file_type_name, tensor_data_offset=data_offset,
        bytes_read=data_offset, alignment=alignment, head_count_per_layer=heads,
        head_count_kv_per_layer=heads_kv, key_length=arch_int("attention.key_length"),
        value_length=arch_int("attention.value_length"),
        sliding_window=sliding if isinstance(sliding, int) and not isinstance(sliding, bool) else 0,
        expert_count=arch_int("expert_count"), expert_used_count=arch_int("expert_used_count"),
        vocab_size=vocab_size, split_count=split_count if isinstance(split_count, int) else 1,
        split_index=split_index if isinstance(split_index, int) else 0,
        split_tensors=split_tensors if isinstance(split_tensors, int) and split_count != 1 else 0, file_size=size,
        tensor_bytes=sum(t.n_bytes for t in tensors))


def read_gguf_header(source: ByteSource | Path, *, limits: HeaderLimits | None = None) -> GGUFHeader:
    """Read and check a GGUF header (metadata and tensor table); raises ModelFileError naming what is wrong."""
    limits = limits or HeaderLimits()
    if isinstance(source, (str, os.PathLike)):
        source = FileSource(Path(source))
    cur = _Cursor(source, limits)
    if cur.size is not None and cur.size < 4:
        raise ModelFileError(f"Not a GGUF file: only {cur.size} bytes long.")
    magic = cur.take(4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"Not a GGUF file: it starts with {magic!r}, not b'GGUF'.")
    cur.where = "the GGUF version and counts"
    version = cur.unpack("<I")
    if version == 1:
        raise ModelFileError("GGUF version 1 is no longer supported by llama.cpp; convert the model again.")
    if version not in (2, 3):
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        hint = " (a big-endian file?)" if swapped in (2, 3) else ""
        raise ModelFileError(f"Unsupported GGUF version {version}{hint}.")
    n_tensors = cur.unpack("<Q")
    n_kv = cur.unpack("<Q")
    if n_tensors > limits.max_tensor_count:
        raise ModelFileError(f"GGUF header announces {n_tensors} tensors; the limit is {limits.max_tensor_count}.")
    if n_kv > limits.max_kv_count:
        raise ModelFileError(f"GGUF header announces {n_kv} metadata entries; the limit is {limits.max_kv_count}.")
    metadata: dict[str, Any] = {}
    for index in range(n_kv):
        cur.where = f"metadata key {index}"
        key = cur.string(f"metadata key {index}")
        if not key:
            raise ModelFileError(f"GGUF metadata key {index} is empty.")
        if key in metadata:
            raise ModelFileError(f"GGUF metadata key '{key}' appears twice.")
        cur.where = f"the value of '{key}'"
        metadata[key] = _read_value(cur, cur.unpack("<I"), key, 0)
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ModelFileError(f"GGUF general.alignment {alignment!r} is not a power of two.")
    tensors: list[TensorInfo] = []
    names: set[str] = set()
    for index in range(n_tensors):
        info = _read_tensor(cur, index, limits)
        if info.name in names:
            raise ModelFileError(f"GGUF tensor '{info.name}' appears twice.")
        names.add(info.name)
        tensors.append(info)
    data_offset = cur.pos + (-cur.pos % alignment) if n_tensors else cur.pos
    expected = 0
    for info in tensors:
        # llama.cpp requires the tensors to follow one another, each padded to the alignment.
        if info.offset != expected:
            raise ModelFileError(f"GGUF tensor '{info.name}' has data offset {info.offset}; expected {expected}.")
        expected += info.n_bytes + (-info.n_bytes % alignment)
    if cur.size is not None and n_tensors and data_offset + expected - (-tensors[-1].n_bytes % alignment) > cur.size:
        raise ModelFileError(f"Truncated GGUF file: the tensor data needs {data_offset + expected} bytes but the "
                             f"file has {cur.size}.")
    header = _build_header(version, metadata, tensors, data_offset, alignment, source.size)
    log.debug("GGUF header: %s, %d tensors, %d keys, %d bytes", header.architecture, n_tensors, n_kv, cur.pos)
    return header
