"""Summary statistics for benchmark samples, computed the way llama-bench computes them."""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Summary:
    """One test's figures from its per-repetition samples."""

    avg_ns: int
    stddev_ns: int
    avg_ts: float
    stddev_ts: float
    samples_ns: list[int]
    samples_ts: list[float]


def rates(samples_ns: Sequence[int], n_tokens: int) -> list[float]:
    """Tokens per second for each repetition: 1e9 * tokens / ns."""
    return [1e9 * n_tokens / ns if ns > 0 else 0.0 for ns in samples_ns]


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean; 0 for no values."""
    return math.fsum(values) / len(values) if values else 0.0


def sample_stddev(values: Sequence[float]) -> float:
    """The sample (n-1) standard deviation; 0 with fewer than two values, as llama-bench reports it."""
    return statistics.stdev(values) if len(values) >= 2 else 0.0


def summarize(samples_ns: Sequence[int], n_tokens: int) -> Summary:
    """Mean and sample standard deviation of the times and of the per-repetition rates.

    The rate's mean is the mean of per-repetition rates, not tokens over the mean time, because
    llama-bench reports it so and results must be comparable with its output.
    """
    samples = [int(ns) for ns in samples_ns]
    ts = rates(samples, n_tokens)
    # llama-bench keeps nanoseconds as integers and truncates their mean and spread.
    return Summary(avg_ns=int(mean(samples)), stddev_ns=int(sample_stddev(samples)),
                   avg_ts=mean(ts), stddev_ts=sample_stddev(ts), samples_ns=samples, samples_ts=ts)
