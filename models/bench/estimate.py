"""The memory estimate that goes beside each measured run, made in the worker so every benchmark checks it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from models.bench.spec import BenchJob, BenchTest

log = logging.getLogger(__name__)


def fit_estimator(job: BenchJob, *, gpu: bool, emit: Callable[..., Any]) -> Callable[[BenchTest], dict[str, int]]:
    """models.fit.estimate's estimate per test, stored beside what llama.cpp logs so every run checks the estimate."""
    try:
        from models.fit.estimate import estimate_for_job
        from models.gguf.reader import read_gguf_header
        from models.machine.hardware import probe_cpu

        header = read_gguf_header(job.model_path)
        cpu_flags = probe_cpu([]).flags
    except Exception as error:  # an estimate that cannot be made must not cost the measurement
        emit("log", level="warning", message=f"No memory estimate for this model: {error}")
        return lambda test: {}

    def estimate(test: BenchTest) -> dict[str, int]:
        try:
            return estimate_for_job(job, test, header=header, gpu=gpu, cpu_flags=cpu_flags)
        except Exception as error:
            emit("log", level="warning", message=f"No memory estimate for {test.name}: {error}")
            return {}

    return estimate
