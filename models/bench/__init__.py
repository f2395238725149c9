"""The benchmark engine: the spec, the worker (child process), the runner, statistics and llama-bench-style output."""

from models.bench.events import BenchEvent
from models.bench.runner import BenchRunner, run_sweep
from models.bench.spec import BenchJob, BenchParams, BenchResult, BenchSweep, BenchTest

__all__ = ["BenchEvent", "BenchJob", "BenchParams", "BenchResult", "BenchRunner", "BenchSweep", "BenchTest",
           "run_sweep"]
