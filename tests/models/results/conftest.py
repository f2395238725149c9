"""Fixtures for the results tests: realistic BenchResults and machine fingerprints, built directly."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest

from models.bench.spec import BenchResult
from models.results.store import ResultsStore

MACHINE_A: dict[str, Any] = {
    "machine_id": "a" * 32, "os": "Linux 6.8", "python": "3.11.7", "cpu": "AMD Ryzen 7 7840U", "cpu_cores": 8,
    "ram_total": 32 * 2**30, "gpus": [], "gpu_driver": "", "backends": ["CPU"],
    "llama_cpp_python_version": "0.3.16", "llama_cpp_commit": "abc1234", "system_info": "AVX2 = 1"}
MACHINE_B: dict[str, Any] = {
    **MACHINE_A, "machine_id": "b" * 32, "cpu": "Intel Core i9-13900K", "cpu_cores": 24,
    "gpus": [{"name": "NVIDIA GeForce RTX 4090", "vram_total": 24 * 2**30}], "gpu_driver": "550.54",
    "backends": ["CPU", "CUDA"]}


def make_result(*, model: str = "SmolLM2-135M-Instruct.Q4_1.gguf", n_prompt: int = 512, n_gen: int = 0,
                n_depth: int = 0, ts: tuple[float, ...] = (1000.0, 1010.0, 990.0), status: str = "ok",
                size: int = 98_362_432, n_params: int = 134_515_008, n_threads: int = 4,
                sha256: str = "", test_time: str = "2026-11-25T10:00:00+00:00", **extra: Any) -> BenchResult:
    """A result shaped like the worker's: samples, their mean and sample stddev, memory figures."""
    tokens = n_prompt + n_gen
    samples_ts = list(ts) if status == "ok" else []
    samples_ns = [int(1e9 * tokens / t) for t in samples_ts]
    name = f"pp{n_prompt}" if n_gen == 0 else f"tg{n_gen}" if n_prompt == 0 else f"pp{n_prompt}+tg{n_gen}"
    if n_depth:
        name += f" @ d{n_depth}"
    spread = statistics.stdev(samples_ts) if len(samples_ts) > 1 else 0.0
    values: dict[str, Any] = dict(
        build_commit="abc1234", build_number=4000, cpu_info="AMD Ryzen 7 7840U", backends="CPU",
        model_filename=model, model_type="llama 135M Q4_1", model_size=size, model_n_params=n_params,
        n_batch=2048, n_ubatch=512, n_threads=n_threads, n_gpu_layers=99, n_prompt=n_prompt, n_gen=n_gen,
        n_depth=n_depth, test_time=test_time,
        avg_ns=int(statistics.mean(samples_ns)) if samples_ns else 0,
        stddev_ns=int(statistics.stdev(samples_ns)) if len(samples_ns) > 1 else 0,
        avg_ts=statistics.mean(samples_ts) if samples_ts else 0.0, stddev_ts=spread,
        samples_ns=samples_ns, samples_ts=samples_ts, test=name, status=status,
        error="" if status == "ok" else "the worker was stopped", load_ms=120.5, ttft_ms=35.0 if status == "ok" else 0,
        mem_rss_anon=60 * 2**20, mem_rss_file=95 * 2**20, mem_peak=180 * 2**20, buf_model=90 * 2**20,
        buf_kv=12 * 2**20, n_ctx=n_prompt + n_gen + n_depth, model_sha256=sha256, model_path=f"/models/{model}",
        fit_estimate={"total": 170 * 2**20, "weights": 94 * 2**20, "kv": 12 * 2**20})
    values.update(extra)
    return BenchResult(**values)


@pytest.fixture
def store(tmp_path: Path) -> ResultsStore:
    with ResultsStore(tmp_path / "results.sqlite3") as opened:
        yield opened
