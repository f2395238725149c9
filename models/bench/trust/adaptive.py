"""Adaptive repetitions (-r auto): repeat a test until the 95% confidence interval of its mean is tight enough."""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)

# Student's t, two-sided 95% (the 0.975 quantile), for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_Z975 = 1.959964


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (the table, then Cornish-Fisher beyond 30)."""
    if df < 1:
        raise ValueError(f"Student's t needs at least 1 degree of freedom, got {df}.")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def ci95(values: Sequence[float]) -> float:
    """Half-width of the 95% confidence interval of the mean (Student t); 0 with fewer than two values."""
    if len(values) < 2:
        return 0.0
    return t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def relative_ci95(values: Sequence[float]) -> float:
    """ci95 over the mean (inf when the mean is 0 or there are fewer than two values: nothing is known yet)."""
    mean = statistics.fmean(values) if values else 0.0
    return ci95(values) / mean if len(values) >= 2 and mean > 0 else math.inf


@dataclass(frozen=True)
class AdaptivePlan:
    """When to stop repeating: the interval within `target` of the mean, after `min_reps`, at most `max_reps`
    repetitions or `max_seconds` of timed work per test, whichever comes first."""

    target: float = 0.02
    min_reps: int = 3
    max_reps: int = 30
    max_seconds: float = 60.0

    def problem(self) -> str | None:
        """Why the plan cannot run, or None."""
        if not 0 < self.target < 1:
            return f"the interval target must be between 0 and 1 (a fraction of the mean), got {self.target}."
        if self.min_reps < 2:
            return f"adaptive repetitions need at least 2 to estimate a spread, got a minimum of {self.min_reps}."
        if self.max_reps < self.min_reps:
            return f"the repetition cap ({self.max_reps}) is below the minimum ({self.min_reps})."
        if not self.max_seconds > 0:
            return f"the time cap must be positive, got {self.max_seconds} s."
        return None

    def done(self, samples_ts: Sequence[float], elapsed_s: float) -> bool:
        """Whether to stop after these repetitions (their rates) and this much timed work."""
        n = len(samples_ts)
        if n >= self.max_reps:
            return True
        if n < self.min_reps:
            return False
        return relative_ci95(samples_ts) <= self.target or elapsed_s >= self.max_seconds

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AdaptivePlan:
        return cls(target=float(data.get("target", 0.02)), min_reps=int(data.get("min_reps", 3)),
                   max_reps=int(data.get("max_reps", 30)), max_seconds=float(data.get("max_seconds", 60.0)))


def interval_fields(samples_ts: Sequence[float], plan: AdaptivePlan | None) -> dict[str, Any]:
    """The interval fields of a result (BenchResult.ci95_ts, ci_target, ci_met): every result carries its
    interval; the target and whether it was met only where the repetitions were adaptive."""
    half = ci95(samples_ts)
    target = plan.target if plan is not None else 0.0
    met = bool(plan is not None and relative_ci95(samples_ts) <= plan.target)
    return {"ci95_ts": half, "ci_target": target, "ci_met": met}
