"""The compute limit on prompt processing: FLOPs per token from generated GGUFs, a result's share of the limit
(the CPU's FLOP/s given; a GPU's as the NVML data-sheet path would give them: no GPU here), and the comparison."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.bench.spec import BenchResult
from models.fit.flops import compute_limit, compute_share, prompt_flops_per_token
from models.gguf.reader import GGUFHeader, read_gguf_header
from models.machine.bandwidth import GpuBandwidth, MachineBandwidth
from models.machine.compute import CpuCompute
from models.results.compare import compare_runs, format_comparison
from models.results.store import ResultsStore
from tests.models.gguf.factory import Shape, write_model

CPU = MachineBandwidth(compute=CpuCompute(flops=100e9, threads=2, n=256, repeats=1))
# Layers: q, o 256x256; k, v 256x64 (2 KV heads of 32); gate, up, down 256x512; two norms of 256; plus the
# output norm. The output matrix (256x512) is left out: a prompt test asks for the last token's logits only.
WEIGHTS = 4 * (2 * 256 * 256 + 2 * 256 * 64 + 3 * 256 * 512 + 2 * 256) + 256
ATTENTION_PER_POSITION = 4 * 2 * 8 * (32 + 32)  # 4 layers; Q.K and softmax.V over 8 heads of 32


def header(tmp_path: Path, shape: Shape) -> GGUFHeader:
    return read_gguf_header(write_model(tmp_path / f"{abs(hash(shape))}.gguf", shape))


def test_flops_per_prompt_token(tmp_path: Path) -> None:
    h = header(tmp_path, Shape())
    assert prompt_flops_per_token(h, n_prompt=512) == 2 * WEIGHTS + ATTENTION_PER_POSITION * 256.5
    # At depth the attention grows by every position already in the cache.
    deep = prompt_flops_per_token(h, n_prompt=512, n_depth=4096)
    assert deep - prompt_flops_per_token(h, n_prompt=512) == ATTENTION_PER_POSITION * 4096
    # A tied output (the embedding doubles as it) is also applied to the last token only.
    assert prompt_flops_per_token(header(tmp_path, Shape(tied_output=True)), n_prompt=512) == \
        prompt_flops_per_token(h, n_prompt=512)
    with pytest.raises(ValueError, match="at least one token"):
        prompt_flops_per_token(h, n_prompt=0)


def test_only_active_experts_and_the_window_count(tmp_path: Path) -> None:
    dense = prompt_flops_per_token(header(tmp_path, Shape()), n_prompt=512)
    moe = prompt_flops_per_token(header(tmp_path, Shape(n_expert=8, n_expert_used=2)), n_prompt=512)
    router = 4 * 256 * 8
    assert moe - dense == 2 * (4 * 3 * 256 * 512 + router)  # two experts as wide as the dense FFN, plus router
    swa = header(tmp_path, Shape(arch="gemma3", n_layer=6, sliding_window=512))
    near, far = (prompt_flops_per_token(swa, n_prompt=512, n_depth=d) for d in (0, 10_000))
    # Only the one full-attention layer in six sees the 10000 positions; the others stop at the 512 window.
    per_layer = 2 * 8 * (32 + 32)
    assert far - near == per_layer * (10_000 + 256.5 - 256.5) + 5 * per_layer * (512 - 256.5)


def _pp(model: Path, ts: float, **kw: object) -> BenchResult:
    fields: dict[str, object] = {"status": "ok", **kw}
    return BenchResult(model_filename=str(model), model_path=str(model), n_prompt=512, n_gen=0, avg_ts=ts,
                       samples_ts=[ts], **fields)  # type: ignore[arg-type]


def test_share_of_the_compute_limit(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.gguf", Shape())
    per_token = 2 * WEIGHTS + ATTENTION_PER_POSITION * 256.5
    ceiling, flops = compute_limit(_pp(model, 1000.0), CPU)
    assert flops == per_token and ceiling == pytest.approx(100e9 / per_token)
    assert compute_share(_pp(model, 1000.0), CPU) == pytest.approx(1000.0 * per_token / 100e9)
    # Not known is no share, never an error: nothing measured, a generation test, a failed run.
    assert compute_share(_pp(model, 1000.0), MachineBandwidth()) is None
    assert compute_share(BenchResult(model_path=str(model), n_gen=128, avg_ts=50.0, status="ok"), CPU) is None
    assert compute_share(_pp(model, 0.0, status="failed"), CPU) is None
    # The file gone: 2 FLOPs per recorded parameter.
    gone = _pp(tmp_path / "gone.gguf", 1000.0, model_n_params=5_000_000)
    assert compute_share(gone, CPU) == pytest.approx(1000.0 * 1e7 / 100e9)


def test_gpu_results_use_the_gpu_peak_where_known(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.gguf", Shape())
    h = read_gguf_header(model)
    # What nvidia_bandwidth gives for an H100 SXM (simulated: no GPU here), and for a GPU not in the table.
    known = MachineBandwidth(compute=CPU.compute, gpus=[GpuBandwidth(0, "NVIDIA H100 80GB HBM3", 3.35e12, 2619, 5120,
                                                                      flops=989e12)])
    unknown = MachineBandwidth(compute=CPU.compute, gpus=[GpuBandwidth(0, "Some GPU", 1e12, 1, 1)])
    full = _pp(model, 5000.0, gpu_info="NVIDIA H100 80GB HBM3", n_gpu_layers=-1)
    per_token = prompt_flops_per_token(h, n_prompt=512)
    assert compute_share(full, known, header=h) == pytest.approx(5000.0 * per_token / 989e12)
    assert compute_share(full, unknown, header=h) is None  # "not known", not the CPU's figure
    partial = _pp(model, 5000.0, gpu_info="NVIDIA H100 80GB HBM3", n_gpu_layers=2)
    assert compute_share(partial, known, header=h) is None  # split across devices: no single peak
    cpu_only = _pp(model, 1000.0, gpu_info="NVIDIA H100 80GB HBM3", n_gpu_layers=0)
    assert compute_share(cpu_only, known, header=h) == pytest.approx(1000.0 * per_token / 100e9)


def test_comparison_shows_pp_against_the_compute_limit(tmp_path: Path) -> None:
    from tests.models.results.conftest import make_result

    machine = {"machine_id": "m1", "cpu": "Test CPU"}
    with ResultsStore(tmp_path / "r.sqlite3") as store:
        store.record_result(make_result(n_prompt=512, speed_estimate={"share_of_compute_limit": 0.41,
                                                                      "compute_ceiling_ts": 2439.0}),
                            machine=machine, job="a")
        store.record_result(make_result(n_prompt=0, n_gen=128, ts=(50.0,), speed_estimate={"share_of_limit": 0.62}),
                            machine=machine, job="a")
        store.record_result(make_result(n_prompt=256), machine=machine, job="a")  # measured before: no share
        runs = store.list_runs()
    comparison = compare_runs(runs)
    assert comparison.rows[0].compute_share == {"pp512": 0.41} and comparison.rows[0].limit_share == {"tg128": 0.62}
    text = format_comparison(comparison)
    assert "Prompt processing against the machine's compute limit" in text
    assert "pp512: at 41% of the limit" in text and "tg128: at 62% of the limit" in text
    assert "pp256: at" not in text


def test_fit_prediction_carries_the_compute_limit(tmp_path: Path) -> None:
    from models.fit.speed import predict_speed

    h = header(tmp_path, Shape())
    assert predict_speed(h, CPU, n_prompt=512).pp_ceiling == pytest.approx(100e9 / prompt_flops_per_token(h, n_prompt=512))
    assert predict_speed(h, MachineBandwidth(), n_prompt=512).pp_ceiling == 0  # not measured
    gpu = MachineBandwidth(compute=CPU.compute, gpus=[GpuBandwidth(0, "Some GPU", 1e12, 1, 1)])
    assert predict_speed(h, gpu, n_prompt=512, gpu=True, n_gpu_layers=-1).pp_ceiling == 0  # its FLOP/s not known
