"""The memory estimate that goes beside each measured run, made in the worker so every benchmark checks it; and the
host memory a test will need, checked against free memory before llama.cpp allocates it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from models.bench.memguard import HostNeed, check_fits, host_need, resolved_job
from models.bench.spec import BenchJob, BenchTest

log = logging.getLogger(__name__)


class FitEstimator:
    """models.fit.estimate's estimate per test (the buffer names of BenchResult), and the host share of it."""

    def __init__(self, job: BenchJob, *, gpu: bool, emit: Callable[..., Any]) -> None:
        self.job, self.gpu, self.emit = job, gpu, emit
        self.header: Any = None
        self.cpu_flags: Any = ()
        try:
            from models.gguf.split import read_model_header  # a split model's every part
            from models.machine.hardware import probe_cpu

            self.header = read_model_header(job.model_path)
            self.cpu_flags = probe_cpu([]).flags
        except Exception as error:  # an estimate that cannot be made must not cost the measurement
            emit("log", level="warning", message=f"No memory estimate for this model: {error}")

    def __call__(self, test: BenchTest) -> dict[str, int]:
        if self.header is None:
            return {}
        try:
            from models.fit.estimate import estimate_for_job

            return estimate_for_job(resolved_job(self.job), test, header=self.header, gpu=self.gpu,
                                    cpu_flags=self.cpu_flags)
        except Exception as error:
            self.emit("log", level="warning", message=f"No memory estimate for {test.name}: {error}")
            return {}

    def check_host(self, test: BenchTest, what: str, *, weights: bool = False) -> None:
        """Raise BenchmarkError when the test's host memory is more than is free (no estimate: no check)."""
        if self.header is None:
            return
        try:
            need = host_need(self.job, test, header=self.header, gpu=self.gpu, cpu_flags=self.cpu_flags,
                             weights=weights)
        except Exception as error:  # noqa: BLE001 - the estimate's own refusals are reported by llama.cpp later
            log.debug("no host estimate for %s: %s", test.name, error)
            need = HostNeed()
        check_fits(need, what)


    def check_weights(self, test: BenchTest, what: str) -> None:
        """Raise BenchmarkError when the CPU weights, read into memory rather than mapped, are more than is free."""
        if self.header is None:
            return
        try:
            need = host_need(self.job, test, header=self.header, gpu=self.gpu, cpu_flags=self.cpu_flags,
                             weights=True)
        except Exception as error:  # noqa: BLE001
            log.debug("no weights estimate: %s", error)
            return
        check_fits(HostNeed(weights=need.weights), what)


def fit_estimator(job: BenchJob, *, gpu: bool, emit: Callable[..., Any]) -> FitEstimator:
    """The estimator for one job (a callable per test)."""
    return FitEstimator(job, gpu=gpu, emit=emit)
