"""The result row of one test, filled with everything known before it runs (so failed rows still say what failed)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from models.bench.spec import BenchJob, BenchResult, BenchTest

log = logging.getLogger(__name__)


def utc_now_iso() -> str:
    """RFC 3339 UTC time to the second, as llama-bench writes test_time."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def tensor_split_text(shares: tuple[float, ...]) -> str:
    """llama-bench's tensor_split cell: each share with two decimals up to the last non-zero one ("0.00" if none)."""
    last = max((i for i, share in enumerate(shares) if share > 0), default=0)
    padded = list(shares) or [0.0]
    return "/".join(f"{share:.2f}" for share in padded[:last + 1])


def blank_result(job: BenchJob, test: BenchTest, *, status: str = "ok", error: str = "") -> BenchResult:
    """A row carrying the job's parameters and the test's sizes, with no measured numbers."""
    params = job.params
    return BenchResult(
        model_filename=str(job.model_path), model_path=str(job.model_path),
        n_batch=params.n_batch, n_ubatch=params.n_ubatch, n_threads=params.n_threads,
        type_k=params.type_k, type_v=params.type_v, n_gpu_layers=params.n_gpu_layers,
        flash_attn=params.flash_attn, load_mode=params.load_mode,
        use_mmap=params.use_mmap is not False,  # until the worker reads what llama.cpp did
        cpu_mask=params.cpu_mask, cpu_strict=params.cpu_strict, poll=params.poll, split_mode=params.split_mode,
        main_gpu=params.main_gpu, no_kv_offload=params.no_kv_offload, rpc=params.rpc,
        tensor_split=tensor_split_text(params.tensor_split),
        n_prompt=test.n_prompt, n_gen=test.n_gen, n_depth=test.n_depth, n_ctx=test.n_ctx,
        test=test.name, test_time=utc_now_iso(), status=status, error=error,
        ttft_prompt_tokens=job.ttft_prompt_tokens)
