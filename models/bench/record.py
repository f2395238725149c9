"""The result row of one test, filled with everything known before it runs (so failed rows still say what failed)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from models.bench.spec import BenchJob, BenchResult, BenchTest

log = logging.getLogger(__name__)


def utc_now_iso() -> str:
    """RFC 3339 UTC time to the second, as llama-bench writes test_time."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def blank_result(job: BenchJob, test: BenchTest, *, status: str = "ok", error: str = "") -> BenchResult:
    """A row carrying the job's parameters and the test's sizes, with no measured numbers."""
    params = job.params
    return BenchResult(
        model_filename=str(job.model_path), model_path=str(job.model_path),
        n_batch=params.n_batch, n_ubatch=params.n_ubatch, n_threads=params.n_threads,
        type_k=params.type_k, type_v=params.type_v, n_gpu_layers=params.n_gpu_layers,
        flash_attn=params.flash_attn, use_mmap=params.use_mmap,
        n_prompt=test.n_prompt, n_gen=test.n_gen, n_depth=test.n_depth, n_ctx=test.n_ctx,
        test=test.name, test_time=utc_now_iso(), status=status, error=error,
        ttft_prompt_tokens=job.ttft_prompt_tokens)
