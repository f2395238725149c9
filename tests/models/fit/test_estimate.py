"""The memory estimate and the fit verdict, on generated headers of known shapes and on hand-built machines."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from models.bench.spec import BenchJob, BenchParams, BenchTest
from models.errors import ModelFileError
from models.fit.estimate import GPU_RESERVE, RAM_RESERVE, estimate_for_job, estimate_memory, fit_verdict
from models.gguf.reader import GGUFHeader, read_gguf_header
from models.machine.hardware import CpuInfo, GpuInfo, HardwareInfo, LlamaBuild
from tests.models.gguf.factory import Gemma4Shape, MlaShape, Shape, split_model, write_gemma4_model, write_mla_model, \
    write_model

GIB = 2**30


def make(tmp_path: Path, shape: Shape) -> GGUFHeader:
    return read_gguf_header(write_model(tmp_path / f"{abs(hash(shape))}.gguf", shape))


def machine(*, ram: int, vram: int = 0, gpu_backend: bool = True, unified: bool = False) -> HardwareInfo:
    """A machine described by real dataclasses (no probe): what fit_verdict reads."""
    gpus = [GpuInfo(index=0, name="Test GPU", vendor="NVIDIA", memory_total=vram, memory_free=vram,
                    unified_memory=unified)] if vram else []
    devices = [{"name": "CPU", "type": "CPU", "memory_free": ram, "memory_total": ram}]
    if vram and gpu_backend:
        devices.append({"name": "CUDA0", "type": "GPU", "memory_free": vram, "memory_total": vram})
    return HardwareInfo(os="test", python="3", cpu=CpuInfo(model="test", physical_cores=4, logical_cores=8),
                        ram_total=ram, ram_available=ram, swap_total=0, swap_free=0, gpus=gpus,
                        llama=LlamaBuild(backends=["CPU"], devices=devices))


def test_kv_cache_is_exact_for_gqa_and_quantized_types(tmp_path: Path) -> None:
    h = make(tmp_path, Shape(n_layer=4, n_head=8, n_head_kv=2, head_dim=32))
    e = estimate_memory(h, n_ctx=4096)
    assert e.kv == 4 * 4096 * (2 * 32) * 2 * 2  # layers x ctx x (K + V rows) x f16
    assert e.kv_per_token == 4 * 2 * 64 * 2
    q8 = estimate_memory(h, n_ctx=4096, type_k="q8_0", type_v="q8_0")
    assert q8.kv == 4 * 4096 * 2 * (64 // 32 * 34)
    assert estimate_memory(h, n_ctx=1000).n_ctx == 1024  # llama.cpp pads the context to 256
    assert estimate_memory(h, n_ctx=1000).kv == estimate_memory(h, n_ctx=1024).kv


def test_head_size_from_key_length(tmp_path: Path) -> None:
    h = make(tmp_path, Shape(n_embd=256, n_head=4, n_head_kv=4, head_dim=128))
    assert estimate_memory(h, n_ctx=512).kv == 4 * 512 * 2 * (4 * 128) * 2


def test_per_layer_kv_heads(tmp_path: Path) -> None:
    h = make(tmp_path, Shape(n_layer=3, n_head=8, head_count_kv_per_layer=(2, 0, 4)))
    assert estimate_memory(h, n_ctx=256).kv == 256 * 2 * (2 + 0 + 4) * 32 * 2


def test_sliding_window_layers(tmp_path: Path) -> None:
    h = make(tmp_path, Shape(arch="gemma3", n_layer=6, sliding_window=128, head_dim=64, n_head=4, n_head_kv=1))
    per_token_layer = 2 * 64 * 2
    e = estimate_memory(h, n_ctx=4096, n_ubatch=512)
    # gemma3: five sliding-window layers in six; their cache holds the window plus one ubatch, padded to 256.
    assert e.kv == 5 * 768 * per_token_layer + 1 * 4096 * per_token_layer
    assert e.kv_per_token == per_token_layer
    assert estimate_memory(h, n_ctx=4096, swa_full=True).kv == 6 * 4096 * per_token_layer
    assert estimate_memory(h, n_ctx=512).kv == 6 * 512 * per_token_layer  # window larger than the context


def test_moe_experts_are_accounted(tmp_path: Path) -> None:
    h = make(tmp_path, Shape(n_expert=4, n_expert_used=2))
    e = estimate_memory(h, n_ctx=512)
    assert e.expert_weights == sum(t.n_bytes for t in h.tensors if "_exps" in t.name) > 0
    assert e.weights == h.tensor_bytes


def test_weights_per_device_follow_llama_cpp_placement(tmp_path: Path) -> None:
    h = make(tmp_path, Shape(n_layer=4))
    embd = next(t.n_bytes for t in h.tensors if t.name == "token_embd.weight")
    out = sum(t.n_bytes for t in h.tensors if t.name.startswith("output"))
    layer = sum(t.n_bytes for t in h.tensors if t.name.startswith("blk.3."))
    cpu_only = estimate_memory(h, n_ctx=512, n_gpu_layers=0)
    assert (cpu_only.device("CPU").weights, cpu_only.device("GPU").weights) == (h.tensor_bytes, 0)
    assert estimate_memory(h, n_ctx=512, n_gpu_layers=1).device("GPU").weights == out  # the output layer first
    assert estimate_memory(h, n_ctx=512, n_gpu_layers=2).device("GPU").weights == out + layer
    full = estimate_memory(h, n_ctx=512, n_gpu_layers=99)
    assert full.n_gpu_layers == 5 and full.device("CPU").weights == embd  # the input layer stays on the CPU
    assert full.device("GPU").kv == full.kv and full.device("CPU").kv == 0
    assert estimate_memory(h, n_ctx=512, n_gpu_layers=-1).device("GPU").weights == full.device("GPU").weights
    no_gpu = estimate_memory(h, n_ctx=512, n_gpu_layers=99, gpu=False)
    assert no_gpu.device("GPU").total == 0 and no_gpu.n_gpu_layers == 0


def test_tied_output_is_loaded_twice_when_offloaded(tmp_path: Path) -> None:
    h = make(tmp_path, Shape(tied_output=True))
    embd = next(t.n_bytes for t in h.tensors if t.name == "token_embd.weight")
    full = estimate_memory(h, n_ctx=512, n_gpu_layers=99)
    assert full.weights == h.tensor_bytes + embd


def test_compute_and_output_grow_as_llama_cpp_does(tmp_path: Path) -> None:
    h = make(tmp_path, Shape())
    small, large = estimate_memory(h, n_ctx=512), estimate_memory(h, n_ctx=32768)
    assert small.output == large.output == h.vocab_size * 4
    no_fa = estimate_memory(h, n_ctx=32768, flash_attn="off")
    assert no_fa.compute > large.compute >= small.compute > 0
    assert estimate_memory(h, n_ctx=512, n_ubatch=128).compute < small.compute


def test_unknown_architecture_gives_weights_and_says_what_is_unknown(tmp_path: Path) -> None:
    body = b"".join([
        struct.pack("<Q", 20) + b"general.architecture" + struct.pack("<I", 8) + struct.pack("<Q", 7) + b"mystery",
        struct.pack("<Q", 4) + b"w.fc" + struct.pack("<I", 2) + struct.pack("<QQ", 64, 3) + struct.pack("<IQ", 1, 0),
    ])
    data = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + body
    data += b"\0" * (-len(data) % 32) + b"\0" * (64 * 3 * 2)
    (tmp_path / "m.gguf").write_bytes(data)
    e = estimate_memory(read_gguf_header(tmp_path / "m.gguf"), n_ctx=512)
    assert e.weights == 64 * 3 * 2 and e.kv == 0 and e.compute == 0
    assert e.unknown and "mystery" in e.unknown[0]


@pytest.mark.parametrize(("shape", "match"), [
    (Shape(n_head=8, n_head_kv=16), "8 heads and 16 KV heads"),
    (Shape(n_head=8, n_head_kv=3), "8 heads and 3 KV heads"),
])
def test_impossible_dimensions(tmp_path: Path, shape: Shape, match: str) -> None:
    with pytest.raises(ModelFileError, match=match):
        estimate_memory(make(tmp_path, shape), n_ctx=512)


def test_zero_heads_and_bad_options(tmp_path: Path) -> None:
    h = make(tmp_path, Shape())
    h.head_count_per_layer = [0] * h.block_count
    with pytest.raises(ModelFileError, match="0 attention heads"):
        estimate_memory(h, n_ctx=512)
    good = make(tmp_path, Shape())
    for kwargs, match in (({"n_ctx": 0}, "out of range"), ({"n_ctx": 1 << 40}, "out of range"),
                          ({"n_ctx": 512, "type_k": "q3_x"}, "Unknown KV cache type"),
                          ({"n_ctx": 512, "type_v": "q8_0", "flash_attn": "off"}, "needs flash attention")):
        with pytest.raises(ModelFileError, match=match):
            estimate_memory(good, **kwargs)  # type: ignore[arg-type]


def test_verdicts(tmp_path: Path) -> None:
    h = make(tmp_path, Shape(n_layer=8, n_embd=512, n_ff=2048, n_vocab=4096))
    need = estimate_memory(h, n_ctx=4096, n_gpu_layers=99)
    big_gpu = fit_verdict(h, machine(ram=64 * GIB, vram=80 * GIB))
    assert big_gpu.verdict == "gpu" and big_gpu.n_gpu_layers == 9 and big_gpu.max_ctx == 32768
    assert big_gpu.headroom_vram == 80 * GIB - GPU_RESERVE - need.device("GPU").total
    cpu = fit_verdict(h, machine(ram=64 * GIB))
    assert cpu.verdict == "cpu" and cpu.n_gpu_layers == 0 and "CPU only" in cpu.summary
    # A GPU whose memory holds only part of the model: some layers, not all.
    gpu_need = need.device("GPU").total
    partial = fit_verdict(h, machine(ram=64 * GIB, vram=GPU_RESERVE + gpu_need // 2))
    assert partial.verdict == "partial" and 0 < partial.n_gpu_layers < 9
    assert partial.estimate.device("GPU").total <= gpu_need // 2
    no_backend = fit_verdict(h, machine(ram=64 * GIB, vram=80 * GIB, gpu_backend=False))
    assert no_backend.verdict == "cpu" and any("no GPU backend" in n for n in no_backend.notes)
    tiny = fit_verdict(h, machine(ram=RAM_RESERVE + need.total // 4))
    assert tiny.verdict == "no_fit" and tiny.headroom_ram < 0 and "Does not fit" in tiny.summary


def test_largest_context_grows_with_memory(tmp_path: Path) -> None:
    h = make(tmp_path, Shape(n_layer=8, n_embd=512, n_head=8, n_head_kv=8, n_ff=1024, ctx_train=1 << 20))
    weights = estimate_memory(h, n_ctx=256).total
    small = fit_verdict(h, machine(ram=RAM_RESERVE + weights + 64 * 2**20))
    large = fit_verdict(h, machine(ram=RAM_RESERVE + weights + 512 * 2**20))
    assert 0 < small.max_ctx < large.max_ctx <= 1 << 20
    at_max = estimate_memory(h, n_ctx=large.max_ctx)
    beyond = estimate_memory(h, n_ctx=large.max_ctx + 256)
    assert at_max.total <= 512 * 2**20 + weights < beyond.total


def test_unified_memory_counts_gpu_and_cpu_against_the_same_ram(tmp_path: Path) -> None:
    h = make(tmp_path, Shape(n_layer=8, n_embd=512, n_ff=2048, n_vocab=4096))
    need = estimate_memory(h, n_ctx=4096, n_gpu_layers=99).total
    roomy = fit_verdict(h, machine(ram=64 * GIB, vram=48 * GIB, unified=True))
    assert roomy.verdict == "gpu" and roomy.headroom_ram == 64 * GIB - RAM_RESERVE - need


def test_estimate_for_job_uses_the_result_field_names(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m.gguf", Shape())
    job = BenchJob(model_path=path, params=BenchParams(n_threads=1, n_gpu_layers=99, type_k="q8_0",
                                                       type_v="q8_0"), tests=(BenchTest(512, 0),))
    out = estimate_for_job(job, job.tests[0], gpu=False)
    assert set(out) == {"buf_model", "buf_kv", "buf_compute", "buf_output", "total"}
    e = estimate_memory(read_gguf_header(path), n_ctx=512, type_k="q8_0", type_v="q8_0", gpu=False)
    assert (out["buf_kv"], out["total"]) == (e.kv, e.total)
    assert out["total"] == out["buf_model"] + out["buf_kv"] + out["buf_compute"] + out["buf_output"]


def test_repacked_weights_follow_the_cpu_features(tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    h = read_gguf_header(write_model(tmp_path / "q.gguf", Shape(n_layer=2), weight_type="q4_0"))
    matrices = sum(t.n_bytes for t in h.tensors if t.type_name == "Q4_0" and t.name != "token_embd.weight")
    plain = estimate_memory(h, n_ctx=512)
    assert plain.weights == h.tensor_bytes and not plain.notes
    # AVX2: ggml copies Q4_0 matrices into CPU_REPACK; the mapping spans the file from token_embd (first) to
    # output_norm, so it still covers the layers' matrices but not output.weight, the last tensor.
    output = next(t.n_bytes for t in h.tensors if t.name == "output.weight")
    assert h.tensors[-1].name == "output.weight"
    avx2 = estimate_memory(h, n_ctx=512, cpu_flags=["AVX", "AVX2"])
    assert avx2.weights == h.tensor_bytes - output + matrices and "repacked" in avx2.notes[0]
    assert estimate_memory(h, n_ctx=512, cpu_flags=["AVX2"], use_mmap=False).weights == h.tensor_bytes
    assert estimate_memory(h, n_ctx=512, cpu_flags=["NEON", "DOTPROD"]).weights == avx2.weights
    offloaded = estimate_memory(h, n_ctx=512, cpu_flags=["AVX2"], n_gpu_layers=99)
    assert offloaded.device("CPU").weights == next(t.n_bytes for t in h.tensors if t.name == "token_embd.weight")


# The pinned host (CUDA_Host) compute buffers llama.cpp 0.3.36 logged for the starter model fully offloaded on an
# NVIDIA H200 (benchmarks/gpu_check.sh). No GPU here: the figures stand in for that run, and the estimate must
# keep matching them.
@pytest.mark.parametrize(("n_ctx", "flash_attn", "measured_mib"),
                         [(512, "on", 2.76), (8192, "on", 10.26), (512, "off", 4.01), (8192, "off", 19.01)])
def test_host_compute_buffer_of_a_full_offload_matches_the_cuda_measurement(
        starter_model: Path, n_ctx: int, flash_attn: str, measured_mib: float) -> None:
    header = read_gguf_header(starter_model)
    estimate = estimate_memory(header, n_ctx=n_ctx, n_gpu_layers=99, flash_attn=flash_attn)  # type: ignore[arg-type]
    host_compute = estimate.device("CPU").compute / 2**20
    assert host_compute == pytest.approx(measured_mib, rel=0.10)


def test_mla_cache_holds_the_latent_k_only(tmp_path: Path) -> None:
    # DeepSeek-V2/V3 as converted today: one KV head of key_length = kv_lora_rank + rope dims (160 here) and
    # value_length = kv_lora_rank; with the MLA keys llama.cpp keeps no V cache (has_v = !is_mla).
    h = read_gguf_header(write_mla_model(tmp_path / "mla.gguf", MlaShape(n_layer=4, kv_lora_rank=128, qk_rope=32)))
    e = estimate_memory(h, n_ctx=4096)
    assert e.kv == 4 * 4096 * 160 * 2  # 5.00 MiB: what llama.cpp 0.3.36 logged for this file (fit_check.py)
    assert e.kv_per_token == 4 * 160 * 2
    assert estimate_memory(h, n_ctx=4096, flash_attn="off").kv == e.kv  # no V to pad either
    # Without the MLA keys the same shape is plain MQA: K and V both cached.
    del h.metadata["deepseek2.attention.key_length_mla"]
    assert estimate_memory(h, n_ctx=4096).kv == 4 * 4096 * (160 + 128) * 2


def test_unknown_architecture_with_a_window_is_all_dense(tmp_path: Path) -> None:
    # llama.cpp starts every layer dense and only an architecture's own code sets a pattern.
    h = make(tmp_path, Shape(arch="llama", n_layer=4, sliding_window=128, head_dim=32, n_head_kv=2))
    assert estimate_memory(h, n_ctx=4096).kv == 4 * 4096 * 2 * 64 * 2


@pytest.mark.parametrize(("arch", "n_layer", "window", "swa_layers", "cache_window"), [
    ("laguna", 8, 512, [1, 2, 3, 5, 6, 7], 512),  # dense first: full at il % 4 == 0
    ("gemma2", 4, 0, [0, 2], 4096),  # no window in the file: gemma2's 4096
    ("smallthinker", 8, 128, [1, 2, 3, 5, 6, 7], 4096),  # window forced to 4096
    ("olmo2", 4, 0, [], 0),  # SWA only with a window in the file
    ("exaone4", 30, 4096, [], 0),  # SWA only for the 64-layer model
    ("llama4", 4, 0, [], 0),  # a window of 0 in the file turns chunked attention off
])
def test_architecture_swa_patterns_follow_llama_cpp(tmp_path: Path, arch: str, n_layer: int, window: int,
                                                    swa_layers: list[int], cache_window: int) -> None:
    from models.fit.shape import model_dims

    h = make(tmp_path, Shape(arch=arch, n_layer=n_layer, sliding_window=window))
    if arch == "llama4":
        h.metadata["llama4.attention.sliding_window"] = 0
    d = model_dims(h, [])
    assert d is not None
    assert [il for il in range(n_layer) if d.swa[il]] == swa_layers
    assert d.n_swa == cache_window


def test_shared_kv_layers_have_no_cache_of_their_own(tmp_path: Path) -> None:
    shape = Gemma4Shape(swa_pattern=(True, False, True, False, True, False), shared_kv=2, head_dim=64,
                        head_dim_swa=32, n_head_kv=1, sliding_window=256)
    h = read_gguf_header(write_gemma4_model(tmp_path / "g4.gguf", shape))
    # Layers 4 and 5 reuse layers 2 (SWA) and 3 (full): two full and two SWA caches. llama.cpp 0.3.36 logged
    # 2.00 MiB (full) + 1.00 MiB (SWA) at n_ctx 4096 with swa_full.
    assert estimate_memory(h, n_ctx=4096, swa_full=True).kv == 2 * 4096 * 128 * 2 + 2 * 4096 * 64 * 2
    swa_cells = 768  # window 256 + ubatch 512, padded to 256
    assert estimate_memory(h, n_ctx=4096).kv == 2 * 4096 * 128 * 2 + 2 * swa_cells * 64 * 2


def test_split_model_is_counted_whole(tmp_path: Path) -> None:
    from models.gguf.split import read_model_header

    whole = write_model(tmp_path / "m.gguf", Shape(n_layer=4))
    shards = split_model(whole, tmp_path, 3)
    single = read_gguf_header(whole)
    merged = read_model_header(shards[0])
    assert (merged.n_params, merged.tensor_bytes, merged.split_count) == (single.n_params, single.tensor_bytes, 3)
    assert merged.file_size == sum(p.stat().st_size for p in shards)
    e = estimate_memory(merged, n_ctx=512, use_mmap=False)
    assert e.weights == single.tensor_bytes and not any("split" in n for n in e.notes)
    # With mmap each shard is mapped on its own: the spans add up to the tensor data, padding aside.
    assert abs(estimate_memory(merged, n_ctx=512).weights - single.tensor_bytes) < 3 * 32
    with pytest.raises(ModelFileError, match="part 1 of a 3-part split"):
        estimate_memory(read_gguf_header(shards[0]), n_ctx=512)  # one shard alone would undercount
    with pytest.raises(ModelFileError, match="give the first part"):
        read_model_header(shards[1])
    job = BenchJob(model_path=shards[0], params=BenchParams(n_threads=1), tests=(BenchTest(512, 0),))
    assert estimate_for_job(job, job.tests[0], gpu=False, cpu_flags=[])["buf_model"] == e.weights
    shards[2].unlink()
    with pytest.raises(ModelFileError, match="Missing part of the split model"):
        read_model_header(shards[0])


def test_a_file_without_tensors_is_refused(tmp_path: Path) -> None:
    # No layers claimed, so the reader accepts it; llama.cpp still refuses it ("tensor 'token_embd.weight' not
    # found"), and so must the estimate.
    arch = struct.pack("<Q", 20) + b"general.architecture" + struct.pack("<IQ", 8, 5) + b"llama"
    (tmp_path / "m.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + arch)
    with pytest.raises(ModelFileError, match="holds no tensors"):
        estimate_memory(read_gguf_header(tmp_path / "m.gguf"), n_ctx=512)
