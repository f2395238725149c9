"""GGUF headers read over HTTP range requests from the loopback Hub, through huggingface_hub's session."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from models.errors import HubError, ModelFileError
from models.gguf.reader import read_gguf_header
from models.hub.remote import HttpRangeSource, read_remote_header
from tests.models.hub.hubserver import HubServer


def test_remote_header_matches_the_local_one_in_one_request(hub: HubServer, big_gguf: Path) -> None:
    hub.add_repo("org/Big-GGUF", {"big-Q8_0.gguf": big_gguf})
    header = read_remote_header("org/Big-GGUF", "big-Q8_0.gguf")
    local = read_gguf_header(big_gguf)
    assert (header.architecture, header.n_params, header.context_length, header.block_count) == \
        (local.architecture, local.n_params, local.context_length, local.block_count)
    assert [t.name for t in header.tensors] == [t.name for t in local.tensors]
    assert header.file_size == big_gguf.stat().st_size
    data = hub.file_requests("big-Q8_0.gguf")
    assert len(data) == 1  # one ranged GET on the CDN (after one redirect from /resolve)
    assert sum(s.bytes_sent for s in data) <= 1 << 20 < big_gguf.stat().st_size


def test_large_vocabulary_header_costs_few_requests(hub: HubServer, tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "vocab-Q4_0.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_token_list([f"tok_{i:06d}_abcdef" for i in range(128_000)])  # ~3.3 MB of strings
    writer.add_tensor("w", np.zeros((1, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    hub.add_repo("org/Vocab-GGUF", {"vocab-Q4_0.gguf": path})
    header = read_remote_header("org/Vocab-GGUF", "vocab-Q4_0.gguf")
    assert header.vocab_size == 128_000
    requests = hub.file_requests("vocab-Q4_0.gguf")
    assert len(requests) <= 3  # blocks of 1, 2, 4 MiB
    assert sum(s.bytes_sent for s in requests) < path.stat().st_size + (1 << 20)


def _absurd(kind: str) -> bytes:
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    key = b"general.name"
    if kind == "string":  # one string value announcing 2^60 bytes
        return head + struct.pack("<Q", len(key)) + key + struct.pack("<IQ", 8, 1 << 60) + b"x" * 64
    if kind == "array":  # an array announcing 2^60 elements
        return head + struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 4, 1 << 60) + b"\0" * 64
    return b"GGUF" + struct.pack("<IQQ", 3, 1 << 50, 1 << 50)  # absurd counts


@pytest.mark.parametrize("kind", ["string", "array", "counts"])
def test_absurd_remote_header_stops_at_the_reader_bounds(hub: HubServer, kind: str) -> None:
    payload = _absurd(kind) + b"\0" * (8 << 20)  # 8 MB of padding the reader must not fetch
    hub.add_repo("org/Evil-GGUF", {"evil-Q4_0.gguf": payload})
    with pytest.raises(ModelFileError):
        read_remote_header("org/Evil-GGUF", "evil-Q4_0.gguf")
    assert sum(s.bytes_sent for s in hub.file_requests("evil-Q4_0.gguf")) <= 1 << 20


def test_range_source_reads_exact_bytes_and_reports_size(hub: HubServer, tiny_gguf: Path) -> None:
    hub.add_repo("org/Tiny-GGUF", {"tiny-Q4_K_M.gguf": tiny_gguf})
    data = tiny_gguf.read_bytes()
    source = HttpRangeSource(f"{hub.url}/org/Tiny-GGUF/resolve/main/tiny-Q4_K_M.gguf", first_block=1000)
    assert source.size == len(data)
    assert source.read(10, 50) == data[10:60]
    assert source.read(5000, 3000) == data[5000:8000]
    assert source.read(len(data) - 5, 100) == data[-5:]
    assert source.read(len(data) + 10, 5) == b""


def test_gated_remote_header_says_a_token_is_needed(hub: HubServer, tiny_gguf: Path) -> None:
    hub.add_repo("org/Gated-GGUF", {"tiny-Q4_K_M.gguf": tiny_gguf}, gated="manual")
    with pytest.raises(HubError, match="gated"):
        read_remote_header("org/Gated-GGUF", "tiny-Q4_K_M.gguf")


def test_missing_file_is_a_hub_error(hub: HubServer, tiny_gguf: Path) -> None:
    hub.add_repo("org/Tiny-GGUF", {"tiny-Q4_K_M.gguf": tiny_gguf})
    with pytest.raises(HubError):
        read_remote_header("org/Tiny-GGUF", "nope.gguf")


def test_the_real_starter_model_header_costs_two_requests_under_2_mib(hub: HubServer, starter_model: Path) -> None:
    hub.add_repo("HuggingFaceTB/SmolLM2-135M-Instruct", {starter_model.name: starter_model})
    header = read_remote_header("HuggingFaceTB/SmolLM2-135M-Instruct", starter_model.name)
    local = read_gguf_header(starter_model)
    assert (header.n_params, header.vocab_size, header.tensor_data_offset) == \
        (local.n_params, local.vocab_size, local.tensor_data_offset)
    requests = hub.file_requests(starter_model.name)
    assert len(requests) <= 2 and sum(r.bytes_sent for r in requests) < 2 << 20  # a 1.8 MB header, 98 MB file


def test_a_server_that_ignores_range_is_read_only_as_far_as_the_header(hub: HubServer, tiny_gguf: Path) -> None:
    # The server sends the whole 64 MB file to every ranged request; the reader must hang up after the header.
    payload = tiny_gguf.read_bytes() + b"\0" * (64 << 20)
    hub.add_repo("org/Tiny-GGUF", {"tiny-Q4_K_M.gguf": payload})
    hub.faults.ignore_range = True
    header = read_remote_header("org/Tiny-GGUF", "tiny-Q4_K_M.gguf")
    assert header.architecture == "llama" and header.file_size == len(payload)
    sent = sum(s.bytes_sent for s in hub.file_requests("tiny-Q4_K_M.gguf"))
    assert sent < 16 << 20  # the first MiB and what the sockets buffered; not the 64 MB body


def test_ignored_range_past_the_transfer_budget_fails_clearly(hub: HubServer, tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "vocab-Q4_0.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_token_list([f"tok_{i:06d}_abcdef" for i in range(128_000)])  # a ~3.3 MB header
    writer.add_tensor("w", np.zeros((1, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    hub.add_repo("org/Vocab-GGUF", {"vocab-Q4_0.gguf": path})
    hub.faults.ignore_range = True
    source = HttpRangeSource(f"{hub.url}/org/Vocab-GGUF/resolve/main/vocab-Q4_0.gguf", max_transfer=3 << 20)
    with pytest.raises(HubError, match="more than 3 MB because the server ignores HTTP range requests"):
        read_gguf_header(source)
    assert source.bytes_fetched <= 3 << 20
