"""Speed prediction from real headers (the starter model, generated GGUFs) and a real results store."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.bench.spec import BenchResult
from models.fit.speed import (SpeedSample, bandwidth_share, fit_correction, history_samples, predict_speed,
                              token_traffic)
from models.gguf.reader import GGUFHeader, read_gguf_header
from models.gguf.split import read_model_header
from models.machine.bandwidth import CpuBandwidth, GpuBandwidth, MachineBandwidth
from models.results.store import ResultsStore
from tests.models.gguf.factory import Shape, write_model

CPU_BW = MachineBandwidth(cpu=CpuBandwidth(read=20e9, copy=25e9, threads=4, buffer_bytes=1, repeats=1))
GPU_BW = MachineBandwidth(cpu=CPU_BW.cpu, gpus=[GpuBandwidth(0, "GPU", 1e12, 1, 1)])


def header(tmp_path: Path, shape: Shape, **kw: str) -> GGUFHeader:
    return read_gguf_header(write_model(tmp_path / f"{abs(hash((shape, tuple(kw.items()))))}.gguf", shape, **kw))


def test_starter_model_reads_its_weights_and_kv_per_token(starter_model: Path) -> None:
    h = read_model_header(starter_model)
    t = token_traffic(h)
    # SmolLM2-135M ties its output to the embedding: the whole matrix is read for the logits, plus one row for
    # the lookup, so the weights read are the file's tensors and one embedding row.
    embd = next(x for x in h.tensors if x.name == "token_embd.weight")
    assert t.weights_cpu == h.tensor_bytes + embd.n_bytes // embd.shape[1]
    # 30 layers x 3 KV heads x 64 x f16, K and V, 256 cells (llama.cpp's padding) at every position of tg128.
    assert t.kv_cpu == 30 * 3 * 64 * 2 * 2 * 256 and t.gpu == 0 and t.kind == "cpu"
    deep = token_traffic(h, n_depth=4096, n_gen=128)
    assert deep.kv_cpu == pytest.approx(30 * 3 * 64 * 2 * 2 * (4096 + 128 + 256 / 2), rel=0.02)
    assert token_traffic(h, type_k="q8_0", type_v="q8_0").kv_cpu == pytest.approx(t.kv_cpu * 34 / 64)
    assert t.active_params == h.n_params


def test_only_active_experts_are_read(tmp_path: Path) -> None:
    dense = token_traffic(header(tmp_path, Shape(n_ff=512)))
    moe = token_traffic(header(tmp_path, Shape(n_ff=512, n_expert=8, n_expert_used=2)))
    all_experts = token_traffic(header(tmp_path, Shape(n_ff=512, n_expert=8, n_expert_used=8)))
    # 2 of 8 experts as wide as the dense FFN read twice its bytes (f16), plus the router.
    router = 4 * 256 * 8 * 2
    ffn = 4 * 3 * 256 * 512 * 2  # gate, up and down of 4 layers
    assert moe.weights_cpu - dense.weights_cpu == ffn + router
    assert all_experts.weights_cpu - moe.weights_cpu == 6 * ffn  # 8 of 8 read four times as much as 2
    assert moe.active_params < all_experts.active_params


def test_offload_splits_the_bytes_between_devices(tmp_path: Path) -> None:
    h = header(tmp_path, Shape(n_layer=4))
    cpu = token_traffic(h)
    full = token_traffic(h, n_gpu_layers=-1, gpu=True)
    half = token_traffic(h, n_gpu_layers=3, gpu=True)  # two layers and the output
    no_backend = token_traffic(h, n_gpu_layers=-1, gpu=False)
    assert full.total == cpu.total == half.total == no_backend.total
    assert full.kind == "gpu" and full.kv_cpu == 0 and 0 < full.weights_cpu < full.weights_gpu / 100  # one row
    assert half.kind == "partial" and half.kv_gpu == half.kv_cpu
    assert no_backend.kind == "cpu" and no_backend.gpu == 0
    # Reading from two memories: the times add up.
    assert half.ceiling(GPU_BW) == pytest.approx(1 / (half.cpu / 20e9 + half.gpu / 1e12))
    assert full.ceiling(CPU_BW) is None  # the GPU's bandwidth is unknown


def test_sliding_window_layers_stop_growing(tmp_path: Path) -> None:
    h = header(tmp_path, Shape(arch="gemma3", n_layer=6, sliding_window=512))
    near, far, farther = (token_traffic(h, n_depth=d) for d in (256, 16384, 32768))
    per_cell = 2 * 2 * 32 * 2  # K and V, 2 KV heads x 32, f16
    # Cells read (padded to 256): 512 near, 16640 far on the one full layer in six; the five SWA layers stop
    # at the window, padded (768).
    assert far.kv_cpu - near.kv_cpu == per_cell * ((16640 - 512) + 5 * (768 - 512))
    assert farther.kv_cpu - far.kv_cpu == per_cell * (32768 - 16384)  # only the full layer grows


def test_bandwidth_share_of_a_result(starter_model: Path) -> None:
    h = read_model_header(starter_model)
    ceiling = token_traffic(h, n_gen=32).ceiling(CPU_BW)
    assert ceiling is not None
    result = BenchResult(model_path=str(starter_model), n_gen=32, avg_ts=ceiling * 0.62, status="ok")
    assert bandwidth_share(result, CPU_BW) == pytest.approx(0.62)
    assert bandwidth_share(BenchResult(model_path=str(starter_model), n_prompt=512, avg_ts=900.0), CPU_BW) is None
    assert bandwidth_share(result, MachineBandwidth()) is None  # not measured
    # The file gone: its recorded size stands in for the weights.
    gone = BenchResult(model_path="/nowhere/x.gguf", model_size=h.tensor_bytes, n_gen=32, avg_ts=10.0)
    assert bandwidth_share(gone, CPU_BW) == pytest.approx(10.0 / (20e9 / h.tensor_bytes))


def _law(seconds: float, n_layer: int, params: int = 0) -> float:
    """A machine that reaches half its bandwidth, spends 40 microseconds per layer and 10 ps per parameter."""
    return 1.0 / (2.0 * seconds + 40e-6 * n_layer + 10e-12 * params)


def test_correction_recovers_a_machine_law() -> None:
    cases = [(1e-3, 30, 10**8), (5e-3, 24, 10**9), (2e-2, 32, 2 * 10**9), (4e-3, 40, 5 * 10**8), (8e-3, 20, 10**8)]
    samples = [SpeedSample(f"m{i}", "cpu", s, layers, _law(s, layers, p), params=p)
               for i, (s, layers, p) in enumerate(cases)]
    c = fit_correction(samples, kind="cpu", threads=4)
    assert c.n_models == 5 and c.a == pytest.approx(2.0, rel=0.05) and c.layer_s == pytest.approx(40e-6, rel=0.3)
    assert c.param_s == pytest.approx(10e-12, rel=0.2)
    assert c.spread < 0.15  # the law is exact: only the prior's share of the uncertainty is left
    none = fit_correction([], kind="cpu")
    assert none.n_models == 0 and none.spread == pytest.approx(0.40)
    assert fit_correction(samples, kind="gpu").n_models == 0  # another placement learns on its own


def _record(store: ResultsStore, path: Path, ts: float, *, machine: str = "this", n_prompt: int = 0,
            n_gen: int = 32) -> None:
    result = BenchResult(model_path=str(path), model_filename=str(path), n_gen=n_gen, n_prompt=n_prompt,
                         avg_ts=ts, n_threads=4, status="ok", model_sha256=path.name)
    store.record_result(result, machine={"machine_id": machine, "cpu": "test"})


def test_prediction_learns_from_the_store(tmp_path: Path, starter_model: Path) -> None:
    # Different weight types, so reading (bytes) and arithmetic (parameters) can be told apart.
    shapes = [(Shape(n_layer=4, n_embd=256, n_ff=512), "f32"), (Shape(n_layer=8, n_embd=512, n_ff=1024), "q4_0"),
              (Shape(n_layer=6, n_embd=384, n_ff=1536), "f16"), (Shape(n_layer=12, n_embd=256, n_ff=768), "f16")]
    paths = [write_model(tmp_path / f"m{i}.gguf", s, weight_type=w) for i, (s, w) in enumerate(shapes)]
    paths.append(starter_model)
    headers = [read_model_header(p) for p in paths]
    truth = []
    for h in headers:
        t = token_traffic(h, n_gen=32)
        seconds = t.seconds_at(CPU_BW)
        assert seconds is not None
        truth.append(_law(seconds, h.block_count, t.active_params))
    target, target_truth = headers[-1], truth[-1]
    prior = predict_speed(target, CPU_BW, n_gen=32)
    assert prior.n_models == 0 and prior.tg > 0 and "no generation results" in prior.notes[0]
    assert prior.tg_ceiling > prior.tg and prior.bytes_per_token > target.tensor_bytes
    with ResultsStore(tmp_path / "r.sqlite3") as store:
        for path, ts in zip(paths[:3], truth[:3]):
            _record(store, path, ts)
        _record(store, paths[3], truth[3] * 10, machine="another")  # another machine: not learned from
        _record(store, paths[0], 5000.0, n_prompt=64, n_gen=0)  # a prompt test: not a generation sample
        records = store.list_runs()
    samples = history_samples(records, CPU_BW, machine_id="this")
    assert len(samples) == 3
    learned = predict_speed(target, CPU_BW, history=records, machine_id="this", n_gen=32)
    assert learned.n_models == 3
    assert abs(learned.tg / target_truth - 1) < 0.05 < abs(prior.tg / target_truth - 1)
    assert learned.tg_low < target_truth < learned.tg_high
    assert learned.text().startswith("≈ ") and " t/s here ± " in learned.text()
    assert learned.pp > 0  # from the prompt test's FLOP rate


def test_no_bandwidth_no_prediction(starter_model: Path) -> None:
    h = read_model_header(starter_model)
    p = predict_speed(h, MachineBandwidth())
    assert p.tg == 0 and p.text() == "speed not predicted" and "CPU memory bandwidth not measured" in p.notes[0]
    gpu = predict_speed(h, CPU_BW, n_gpu_layers=-1, gpu=True)
    assert gpu.tg == 0 and "GPU memory bandwidth not measured" in gpu.notes[0]


def test_models_the_cache_holds_learn_apart(tmp_path: Path, starter_model: Path) -> None:
    h = read_model_header(starter_model)
    t = token_traffic(h)
    assert t.regime() == "cpu" and t.regime(cache_bytes=2 * t.cpu) == "cpu-cache"
    assert t.regime(cache_bytes=t.cpu // 2) == "cpu"  # twice the cache: read from RAM
    # A small model measured far above the RAM limit says nothing about a large one, and the reverse.
    with ResultsStore(tmp_path / "r.sqlite3") as store:
        ceiling = t.ceiling(CPU_BW)
        assert ceiling is not None
        _record(store, starter_model, ceiling * 1.5)
        records = store.list_runs()
    tiny = read_gguf_header(write_model(tmp_path / "tiny.gguf", Shape()))
    cache = 16 << 20  # holds the tiny model, not the starter
    small = predict_speed(tiny, CPU_BW, history=records, machine_id="this", cache_bytes=cache)
    large = predict_speed(h, CPU_BW, history=records, machine_id="this", cache_bytes=cache)
    assert small.kind == "cpu-cache" and small.n_models == 0
    assert large.kind == "cpu" and large.n_models == 1
