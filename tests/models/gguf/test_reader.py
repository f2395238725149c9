"""The GGUF header reader: real files, generated shapes, and hostile headers written byte by byte."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from models.errors import ModelFileError
from models.gguf.byte_source import FileSource
from models.gguf.reader import ArraySummary, HeaderLimits, read_gguf_header
from models.gguf.types import GGML_TYPES
from tests.models.gguf.factory import Shape, write_model

STRING, ARRAY, UINT32, FLOAT32 = 8, 9, 4, 6


def s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str, value_type: int, payload: bytes) -> bytes:
    return s(key) + struct.pack("<I", value_type) + payload


def header(n_tensors: int, n_kv: int, body: bytes, *, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + body


def tensor(name: str, dims: list[int], ggml_type: int = 0, offset: int = 0) -> bytes:
    return s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + \
        struct.pack("<IQ", ggml_type, offset)


class CountingSource:
    """A ByteSource over bytes that records how much was read (the remote reader's cost)."""

    def __init__(self, data: bytes, *, known_size: bool = True) -> None:
        self.data, self.known_size, self.bytes_read, self.calls = data, known_size, 0, 0

    @property
    def size(self) -> int | None:
        return len(self.data) if self.known_size else None

    def read(self, offset: int, size: int) -> bytes:
        self.calls += 1
        chunk = self.data[offset:offset + size]
        self.bytes_read += len(chunk)
        return chunk


def fails(data: bytes, match: str, **kwargs: object) -> CountingSource:
    source = CountingSource(data)
    with pytest.raises(ModelFileError, match=match):
        read_gguf_header(source, **kwargs)  # type: ignore[arg-type]
    return source


def test_starter_model_header(starter_model: Path) -> None:
    h = read_gguf_header(starter_model)
    assert (h.architecture, h.block_count, h.head_count, h.head_count_kv) == ("llama", 30, 9, 3)
    assert (h.embedding_length, h.vocab_size, h.context_length) == (576, 49152, 8192)
    assert h.file_type_name == "Q4_1" and len(h.tensors) == 272
    assert h.n_params == 134_515_008  # what llama.cpp reports as model_n_params
    assert h.tensor_data_offset + h.tensor_bytes == starter_model.stat().st_size
    assert isinstance(h.metadata["tokenizer.ggml.tokens"], ArraySummary)
    assert h.metadata["tokenizer.ggml.tokens"].count == 49152
    q = next(t for t in h.tensors if t.name == "blk.0.attn_q.weight")
    assert q.shape == (576, 576) and q.type_name == "Q4_1" and q.n_bytes == 576 * 576 // 32 * 20


def test_type_table_matches_the_gguf_package() -> None:
    gguf = pytest.importorskip("gguf")
    # The PyPI package still sizes Q8_1 with two f32 scales (40 bytes); ggml's block_q8_1 has two halves (36).
    newer = {"Q8_1": (32, 36)}
    for qtype, (block, size) in gguf.GGML_QUANT_SIZES.items():
        assert GGML_TYPES[int(qtype)][1:] == newer.get(qtype.name, (block, size)), qtype.name
        assert GGML_TYPES[int(qtype)][0] == qtype.name


@pytest.mark.parametrize("shape", [
    Shape(n_head=8, n_head_kv=2),
    Shape(n_head=4, n_head_kv=4, head_dim=128),
    Shape(arch="gemma3", n_layer=6, sliding_window=128, head_dim=64, tied_output=True),
    Shape(n_expert=4, n_expert_used=2),
    Shape(n_layer=3, head_count_kv_per_layer=(2, 0, 4)),
], ids=lambda shape: shape.label)
def test_generated_shapes(tmp_path: Path, shape: Shape) -> None:
    path = write_model(tmp_path / "m.gguf", shape)
    h = read_gguf_header(path)
    hd = shape.head_dim or shape.n_embd // shape.n_head
    assert (h.architecture, h.block_count, h.head_count) == (shape.arch, shape.n_layer, shape.n_head)
    assert h.key_length == hd and h.value_length == hd
    assert h.head_count_kv_per_layer == list(shape.head_count_kv_per_layer or [shape.n_head_kv] * shape.n_layer)
    assert h.head_count_kv == max(h.head_count_kv_per_layer)
    assert (h.sliding_window, h.expert_count, h.expert_used_count) == (
        shape.sliding_window, shape.n_expert, shape.n_expert_used)
    assert h.vocab_size == shape.n_vocab and h.file_type_name == "F16"
    assert h.tensor_data_offset + h.tensor_bytes == path.stat().st_size
    assert h.tensor_data_offset % h.alignment == 0
    if shape.n_expert:
        exps = next(t for t in h.tensors if t.name == "blk.0.ffn_up_exps.weight")
        assert exps.shape == (shape.n_embd, shape.n_ff, shape.n_expert)
        assert exps.n_bytes == shape.n_embd * shape.n_ff * shape.n_expert * 2


def test_quantized_tensor_sizes(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    import numpy as np

    writer = gguf.GGUFWriter(str(tmp_path / "q.gguf"), "llama")
    for name, qtype in (("a", gguf.GGMLQuantizationType.Q8_0), ("b", gguf.GGMLQuantizationType.Q4_K),
                        ("c", gguf.GGMLQuantizationType.IQ2_XS)):
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        writer.add_tensor(name, np.zeros((3, 512 // block * size), dtype=np.uint8), raw_dtype=qtype)
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file()
    writer.close()
    h = read_gguf_header(tmp_path / "q.gguf")
    assert [(t.shape, t.type_name, t.n_bytes) for t in h.tensors] == [
        ((512, 3), "Q8_0", 3 * 16 * 34), ((512, 3), "Q4_K", 3 * 2 * 144), ((512, 3), "IQ2_XS", 3 * 2 * 74)]
    assert h.file_type == -1 and "guessed" in h.file_type_name


def test_huge_array_is_refused_after_reading_almost_nothing() -> None:
    body = kv("general.architecture", STRING, s("llama")) + kv("x", ARRAY, struct.pack("<IQ", UINT32, 1 << 60))
    source = fails(header(0, 2, body), "announces 1152921504606846976 elements")
    assert source.calls == 1 and source.bytes_read < 200


def test_huge_string_is_refused() -> None:
    fails(header(0, 1, kv("x", STRING, struct.pack("<Q", 1 << 63))), "string of 9223372036854775808 bytes")
    fails(header(0, 1, struct.pack("<Q", 1 << 63)), "metadata key 0 announces a string")


def test_nested_arrays_are_refused_as_ggml_does() -> None:
    # ggml's gguf reader refuses any array of arrays ("invalid GGUF type 9"): one level, or a thousand.
    nested = struct.pack("<IQ", ARRAY, 1) * 1000 + struct.pack("<IQ", UINT32, 0)
    fails(header(0, 1, kv("deep", ARRAY, nested)), "array of arrays")
    # Token strings stored as arrays of bytes: llama.cpp cannot load the file (checked with llama.cpp 0.3.36).
    tokens = struct.pack("<IQ", ARRAY, 2) + b"".join(struct.pack("<IQ", 0, 2) + b"ab" for _ in range(2))
    fails(header(0, 1, kv("tokenizer.ggml.tokens", ARRAY, tokens)), "'tokenizer.ggml.tokens' is an array of arrays")


def test_long_arrays_are_summarised_and_skipped_without_reading_them() -> None:
    n = 2_000_000
    body = kv("scores", ARRAY, struct.pack("<IQ", FLOAT32, n) + b"\0" * (4 * n)) + kv("after", UINT32, b"\x07\0\0\0")
    source = CountingSource(header(0, 2, body))
    h = read_gguf_header(source)  # type: ignore[arg-type]
    assert isinstance(h.metadata["scores"], ArraySummary) and h.metadata["scores"].count == n
    assert h.metadata["after"] == 7
    assert source.bytes_read < 4 * n  # the skipped floats were never fetched


def test_header_byte_budget() -> None:
    body = kv("x", STRING, s("a" * 5000))
    fails(header(0, 1, body), "larger than the 4096 byte limit", limits=HeaderLimits(max_header_bytes=4096))


@pytest.mark.parametrize(("dims", "ggml_type", "match"), [
    ([1 << 32, 1 << 32], 0, "overflows a 64-bit integer"),
    ([1 << 63, 1], 0, "negative or huge dimension"),
    ([1 << 31, 1 << 31, 2], 0, "overflows"),
    ([1, 1, 1, 1, 1], 0, "5 dimensions"),
    ([32], 99, "unknown ggml type 99"),
    ([33], 2, "not a multiple of its block size 32"),
])
def test_impossible_tensor_shapes(dims: list[int], ggml_type: int, match: str) -> None:
    fails(header(1, 0, tensor("w", dims, ggml_type)), match)


@pytest.mark.parametrize(("data", "match"), [
    (b"PK\x03\x04" + b"\0" * 40, "Not a GGUF file"),
    (b"GG", "only 2 bytes"),
    (header(0, 0, b"", version=1), "version 1"),
    (b"GGUF" + struct.pack(">I", 3) + b"\0" * 16, "big-endian"),
    (header(1 << 40, 0, b""), "1099511627776 tensors"),
    (header(0, 1 << 40, b""), "1099511627776 metadata entries"),
    (header(0, 1, kv("x", 77, b"")), "unknown value type 77"),
    (header(0, 2, kv("x", UINT32, b"\0" * 4) * 2), "'x' appears twice"),
    (header(0, 1, kv("", UINT32, b"\0" * 4)), "key 0 is empty"),
    (header(0, 1, kv("general.alignment", UINT32, struct.pack("<I", 24))), "not a power of two"),
    (header(2, 0, tensor("w", [8]) + tensor("w", [8], offset=32)), "'w' appears twice"),
    (header(1, 0, tensor("w", [8], offset=64)), "offset 64; expected 0"),
    (header(1, 0, tensor("x" * 80, [8])), "invalid name of 80 bytes"),
])
def test_malformed_headers(data: bytes, match: str) -> None:
    fails(data, match)


def test_truncation_at_every_region(tmp_path: Path) -> None:
    data = write_model(tmp_path / "m.gguf", Shape(n_layer=1, n_embd=32, n_head=2, n_head_kv=1, n_ff=32,
                                                  n_vocab=8)).read_bytes()
    h = read_gguf_header(CountingSource(data))  # type: ignore[arg-type]
    cuts = list(range(0, h.tensor_data_offset)) + [h.tensor_data_offset + 1, len(data) - 1]
    for cut in cuts:
        with pytest.raises(ModelFileError, match="Truncated|Not a GGUF|only"):
            read_gguf_header(CountingSource(data[:cut]))  # type: ignore[arg-type]
    # A source that cannot tell its size (a server without Content-Length) still stops at the end.
    with pytest.raises(ModelFileError, match="Truncated"):
        read_gguf_header(CountingSource(data[:h.tensor_data_offset // 2], known_size=False))  # type: ignore[arg-type]


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="Cannot open"):
        FileSource(tmp_path / "nope.gguf")
    with pytest.raises(ModelFileError, match="Cannot open"):
        read_gguf_header(tmp_path / "nope.gguf")
    (tmp_path / "dir.gguf").mkdir()
    with pytest.raises(ModelFileError):
        read_gguf_header(tmp_path / "dir.gguf")


def test_split_metadata_is_noted() -> None:
    body = (kv("general.architecture", STRING, s("llama")) + kv("split.count", 2, struct.pack("<H", 3))
            + kv("split.no", 2, struct.pack("<H", 1)))
    h = read_gguf_header(CountingSource(header(0, 3, body)))  # type: ignore[arg-type]
    assert h.is_split and (h.split_count, h.split_index) == (3, 1)


def with_tensors(n_kv: int, body: bytes, n_tensors: int) -> bytes:
    """A header with `n_tensors` small f32 tensors after the metadata, and their (zero) data."""
    tensors = b"".join(tensor(f"blk.{i}.w", [32], 0, 128 * i) for i in range(n_tensors))
    data = header(n_tensors, n_kv, body + tensors)
    return data + b"\0" * (-len(data) % 32) + b"\0" * (128 * n_tensors)


def test_per_layer_array_of_the_wrong_length() -> None:
    body = (kv("general.architecture", STRING, s("llama")) + kv("llama.block_count", UINT32, struct.pack("<I", 4))
            + kv("llama.attention.head_count", ARRAY, struct.pack("<IQ", UINT32, 3) + b"\x08\0\0\0" * 3))
    fails(with_tensors(3, body, 4), "3 per-layer values for 4 layers")


def test_a_layer_count_the_tensors_cannot_hold_is_refused_before_any_allocation() -> None:
    # Issue 15 #11: a 640-byte file claiming 2^32-1 layers made the reader build per-layer lists until MemoryError.
    body = (kv("general.architecture", STRING, s("llama"))
            + kv("llama.block_count", UINT32, struct.pack("<I", 2**32 - 1))
            + kv("llama.attention.head_count", UINT32, struct.pack("<I", 8))
            + kv("llama.attention.head_count_kv", UINT32, struct.pack("<I", 2)))
    data = with_tensors(4, body, 3)
    assert len(data) < 1024
    import time

    started = time.perf_counter()
    fails(data, r"says 4294967295 layers, but the file has only 3 tensors")
    assert time.perf_counter() - started < 1.0  # refused at once (it used to allocate until the OOM killer came)
    # A part of a split model holds only some tensors: the bound is split.tensors.count, all parts together.
    split = body + kv("split.count", 2, struct.pack("<H", 2)) + kv("split.no", 2, struct.pack("<H", 0))
    fails(with_tensors(7, split + kv("split.tensors.count", 5, struct.pack("<i", 7)), 3), "only 7 tensors")
    ok = split.replace(struct.pack("<I", 2**32 - 1), struct.pack("<I", 6))
    source = CountingSource(with_tensors(7, ok + kv("split.tensors.count", 5, struct.pack("<i", 9)), 3))
    h = read_gguf_header(source)  # type: ignore[arg-type]
    assert (h.block_count, len(h.head_count_per_layer), h.split_tensors) == (6, 6, 9)
