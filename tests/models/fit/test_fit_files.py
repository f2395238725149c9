"""`tokenometer fit` on files llama.cpp refuses, on a hostile layer count, and on split models (local and Hub)."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from models.cli import main
from models.errors import ModelFileError
from models.fit.estimate import fit_verdict
from models.gguf.reader import read_gguf_header
from tests.models.gguf.factory import Shape, split_model, write_model
from tests.models.hub.conftest import hub  # noqa: F401 - the loopback Hub fixture
from tests.models.hub.hubserver import HubServer

from .test_estimate import GIB, machine


def _write(path: Path, *, tensors: bool = True, arch: bool = True, tokens: str = "strings",
           zero_dim: bool = False) -> Path:
    """A small llama file like the fault campaign's, with one thing wrong at a time (gguf package)."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    if not arch:
        del writer.kv_data[0]["general.architecture"]
    writer.add_context_length(1024)
    writer.add_embedding_length(64)
    writer.add_block_count(2)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("llama")
    if tokens == "bytes":
        writer.add_key_value("tokenizer.ggml.tokens", list(range(256)), gguf.GGUFValueType.ARRAY,
                             sub_type=gguf.GGUFValueType.UINT8)
    else:
        writer.add_token_list([f"<t{i}>" for i in range(256)])
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    if tensors:
        writer.add_tensor("token_embd.weight", np.zeros((256, 64), np.float16))
        for il in range(2):
            for name, shape in (("attn_q", (64, 64)), ("attn_k", (32, 64)), ("attn_v", (32, 64)),
                                ("attn_output", (64, 64)), ("ffn_gate", (128, 64)), ("ffn_up", (128, 64)),
                                ("ffn_down", (64, 128))):
                writer.add_tensor(f"blk.{il}.{name}.weight", np.zeros(shape, np.float16))
            writer.add_tensor(f"blk.{il}.attn_norm.weight", np.ones(64, np.float32))
            writer.add_tensor(f"blk.{il}.ffn_norm.weight", np.ones(64, np.float32))
        writer.add_tensor("output_norm.weight", np.ones(64, np.float32))
        writer.add_tensor("output.weight", np.zeros((0, 64) if zero_dim else (256, 64), np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# Each of these was loaded with llama-cpp-python 0.3.36 in a one-off script: llama.cpp refused every one, with the
# message quoted in the refusal.
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"tensors": False}, "says 2 layers, but the file has only 0 tensors"),
    ({"zero_dim": True}, r"'output.weight' has a zero-size dimension"),
    ({"tokens": "bytes"}, "tokenizer.ggml.tokens is not an array of strings"),
    ({"arch": False}, "no general.architecture"),
])
def test_fit_refuses_what_llama_cpp_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            kwargs: dict[str, Any], match: str) -> None:
    path = _write(tmp_path / "bad.gguf", **kwargs)
    assert main(["fit", str(path)]) == 1
    captured = capsys.readouterr()
    assert "Verdict" not in captured.out
    assert match.replace("\\", "") in captured.err.replace("\\", "") or pytest.fail(captured.err)
    with pytest.raises(ModelFileError, match=match):
        fit_verdict(read_gguf_header(path), machine(ram=64 * GIB))


def test_a_bool_stored_as_7_is_read_as_true_as_llama_cpp_does(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # ggml reads a bool as "byte != 0"; llama.cpp loaded this file, so fit must judge it too.
    data = bytearray(_write(tmp_path / "b.gguf").read_bytes())
    key = b"tokenizer.ggml.add_bos_token"
    at = data.index(key) + len(key)
    assert struct.unpack_from("<IB", data, at) == (7, 1)
    data[at + 4] = 7
    (tmp_path / "b.gguf").write_bytes(bytes(data))
    assert read_gguf_header(tmp_path / "b.gguf").metadata["tokenizer.ggml.add_bos_token"] is True
    assert main(["fit", str(tmp_path / "b.gguf")]) == 0
    assert "Verdict" in capsys.readouterr().out


def test_largest_context_is_never_below_a_context_that_fits(tmp_path: Path) -> None:
    # A 128-token model said "Runs at 128 tokens … Largest context that fits: 0 tokens".
    h = read_gguf_header(write_model(tmp_path / "m.gguf", Shape(ctx_train=128)))
    verdict = fit_verdict(h, machine(ram=64 * GIB))
    assert verdict.verdict == "cpu" and verdict.n_ctx == 128
    assert verdict.max_ctx == 128 and "Largest context that fits: 128 tokens" in verdict.summary


def _huge_layer_count(path: Path) -> Path:
    """The fault campaign's file: block_count 2^32-1 and a handful of tiny tensors, under 1 kB."""
    def s(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    body = (s("general.architecture") + struct.pack("<I", 8) + s("llama")
            + s("llama.block_count") + struct.pack("<II", 4, 2**32 - 1)
            + s("llama.attention.head_count") + struct.pack("<II", 4, 8)
            + s("llama.embedding_length") + struct.pack("<II", 4, 64))
    tensors = b"".join(s(f"blk.{i}.w") + struct.pack("<IQIQ", 1, 32, 0, 128 * i) for i in range(3))
    data = b"GGUF" + struct.pack("<IQQ", 3, 3, 4) + body + tensors
    data += b"\0" * (-len(data) % 32) + b"\0" * 384
    path.write_bytes(data)
    return path


def test_a_huge_layer_count_is_refused_fast_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       hub: HubServer) -> None:  # noqa: F811
    path = _huge_layer_count(tmp_path / "models" / "evil.gguf") if (tmp_path / "models").mkdir() is None else None
    assert path is not None and path.stat().st_size < 1024
    started = time.perf_counter()
    assert main(["fit", str(path)]) == 1
    assert "4294967295 layers, but the file has only 3 tensors" in capsys.readouterr().err
    from models.hub.library import add_folder, list_models

    add_folder(path.parent)
    entry = next(e for e in list_models(include_other_apps=False) if e.path == path.resolve())
    assert entry.header is None and "4294967295 layers" in (entry.header_error or "")
    hub.add_repo("org/Evil-GGUF", {"evil-Q4_0.gguf": path})
    assert main(["fit", "org/Evil-GGUF/evil-Q4_0.gguf"]) == 1
    assert "4294967295 layers" in capsys.readouterr().err
    assert time.perf_counter() - started < 10  # each used to allocate until MemoryError or the OOM killer


def test_fit_counts_every_part_of_a_split_model(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                hub: HubServer) -> None:  # noqa: F811
    whole = write_model(tmp_path / "whole" / "m-Q8_0.gguf", Shape(n_layer=4)) \
        if (tmp_path / "whole").mkdir() is None else None
    assert whole is not None
    (tmp_path / "split").mkdir()
    shards = split_model(whole, tmp_path / "split", 3)
    single = read_gguf_header(whole)
    assert main(["fit", str(shards[0]), "--json"]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert (model["n_params"], model["size"], model["split_count"]) == (single.n_params, single.tensor_bytes, 3)
    assert main(["fit", str(shards[0])]) == 0
    out = capsys.readouterr().out
    assert "3 parts" in out and "first shard" not in out and "part 1 of" not in out
    # On the Hub: each part's header costs one ranged request, and the sums are the same.
    hub.add_repo("org/Split-GGUF", {p.name: p for p in shards})
    assert main(["fit", f"org/Split-GGUF/{shards[0].name}", "--json"]) == 0
    remote = json.loads(capsys.readouterr().out)["model"]
    assert (remote["n_params"], remote["size"], remote["split_count"]) == (single.n_params, single.tensor_bytes, 3)
    for shard in shards:
        assert len(hub.file_requests(shard.name)) == 1
    assert main(["fit", f"org/Split-GGUF/{shards[1].name}"]) == 1
    assert "give the first part" in capsys.readouterr().err
