"""The statistics match llama-bench's definitions (mean of per-repetition rates, sample standard deviation)."""

from __future__ import annotations

import statistics

import pytest

from models.bench.stats import rates, sample_stddev, summarize


def test_rates_are_tokens_over_seconds_per_repetition() -> None:
    assert rates([1_000_000_000, 500_000_000], 100) == [100.0, 200.0]


def test_summary_is_mean_of_rates_not_rate_of_mean() -> None:
    summary = summarize([1_000_000_000, 500_000_000], 100)
    assert summary.avg_ts == pytest.approx(150.0)  # tokens / mean time would be 133.3
    assert summary.stddev_ts == pytest.approx(statistics.stdev([100.0, 200.0]))
    assert summary.avg_ns == 750_000_000
    assert summary.stddev_ns == int(statistics.stdev([1_000_000_000, 500_000_000]))
    assert summary.samples_ns == [1_000_000_000, 500_000_000]
    assert summary.samples_ts == [100.0, 200.0]


def test_one_sample_has_zero_spread() -> None:
    summary = summarize([2_000_000], 4)
    assert summary.stddev_ts == 0.0 and summary.stddev_ns == 0
    assert summary.avg_ts == pytest.approx(2000.0)
    assert sample_stddev([]) == 0.0
