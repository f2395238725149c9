"""The speed prediction stored beside each generation result (real runner, real tiny model, real bandwidth test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.bench.runner import BenchRunner
from models.bench.spec import BenchJob, BenchParams, BenchTest
from models.machine.bandwidth import machine_bandwidth
from tests.models.gguf.factory import Shape, write_model


def _job(tmp_path: Path) -> BenchJob:
    model = write_model(tmp_path / "tiny.gguf", Shape(n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256))
    return BenchJob(model_path=model, params=BenchParams(n_threads=1, n_gpu_layers=0),
                    tests=(BenchTest(n_prompt=16, n_gen=0), BenchTest(n_prompt=0, n_gen=8)), repetitions=2)


def test_generation_results_carry_their_prediction(tmp_path: Path) -> None:
    machine_bandwidth(buffer_bytes=16 << 20, repeats=2, threads=1, min_seconds=0)
    pp, tg = BenchRunner().run([_job(tmp_path)])
    assert pp.status == tg.status == "ok"
    # Prompt tests: no bandwidth prediction, but the compute limit (this CPU's GEMM peak, measured above).
    c = pp.speed_estimate
    assert set(c) == {"compute_ceiling_ts", "share_of_compute_limit", "flops_per_token", "device_flops"}
    assert c["device_flops"] > 0 and c["compute_ceiling_ts"] == pytest.approx(c["device_flops"] / c["flops_per_token"])
    assert c["share_of_compute_limit"] == pytest.approx(pp.avg_ts / c["compute_ceiling_ts"])
    e = tg.speed_estimate
    assert e["low_ts"] < e["predicted_ts"] < e["high_ts"] and e["n_models"] == 0
    assert e["share_of_limit"] == pytest.approx(tg.avg_ts / e["ceiling_ts"])
    assert e["bytes_per_token"] > 0


def test_no_stored_bandwidth_no_prediction(tmp_path: Path) -> None:
    _, tg = BenchRunner().run([_job(tmp_path)])
    assert tg.status == "ok" and tg.speed_estimate == {}  # never measured during a benchmark


def test_bandwidth_stored_without_compute_gives_no_pp_share(tmp_path: Path) -> None:
    import json

    from models.machine import bandwidth as bw

    machine_bandwidth(buffer_bytes=16 << 20, repeats=2, threads=1, min_seconds=0)
    data = json.loads(bw.cache_path().read_text())
    del data["compute"]  # stored before the compute peak was measured: "not measured", never an error
    bw.cache_path().write_text(json.dumps(data))
    pp, tg = BenchRunner().run([_job(tmp_path)])
    assert pp.status == "ok" and pp.speed_estimate == {} and tg.speed_estimate["share_of_limit"] > 0
