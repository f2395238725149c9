"""Serving metrics as vLLM's benchmark_serving defines them: TTFT, TPOT, ITL, E2E latency, throughput, goodput."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

PERCENTILES = (50.0, 90.0, 99.0)


@dataclass
class RequestRecord:
    """One request's life, in seconds from the start of the load level; token_times hold each output token's arrival."""

    prompt_tokens: int
    max_tokens: int
    sent_at: float
    token_times: list[float] = field(default_factory=list)
    finished_at: float | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.finished_at is not None and bool(self.token_times)

    @property
    def output_tokens(self) -> int:
        return len(self.token_times)

    @property
    def ttft(self) -> float | None:
        """Time to first token: from sending the request to its first output token."""
        return self.token_times[0] - self.sent_at if self.token_times else None

    @property
    def e2e(self) -> float | None:
        """End-to-end latency: from sending the request to its last byte."""
        return self.finished_at - self.sent_at if self.finished_at is not None else None

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first (vLLM: (latency - ttft) / (output tokens - 1))."""
        if self.output_tokens < 2 or self.e2e is None or self.ttft is None:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)

    @property
    def itl(self) -> list[float]:
        """Inter-token latencies: the gaps between consecutive output tokens."""
        return [b - a for a, b in zip(self.token_times, self.token_times[1:])]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(prompt_tokens=int(data["prompt_tokens"]), max_tokens=int(data["max_tokens"]),
                   sent_at=float(data["sent_at"]), token_times=[float(t) for t in data.get("token_times", [])],
                   finished_at=None if data.get("finished_at") is None else float(data["finished_at"]),
                   error=str(data.get("error", "")))


@dataclass(frozen=True)
class Slo:
    """Service-level objective: limits on TTFT and TPOT (seconds), judged at a percentile (vLLM's goodput)."""

    ttft: float | None = None
    tpot: float | None = None
    percentile: float = 90.0

    def met_by(self, record: RequestRecord) -> bool:
        """Whether one finished request met every limit (what vLLM's goodput counts)."""
        if not record.ok:
            return False
        if self.ttft is not None and (record.ttft is None or record.ttft > self.ttft):
            return False
        if self.tpot is not None and record.tpot is not None and record.tpot > self.tpot:
            return False
        return True

    def describe(self) -> str:
        parts = []
        if self.ttft is not None:
            parts.append(f"TTFT p{self.percentile:g} ≤ {self.ttft:g} s")
        if self.tpot is not None:
            parts.append(f"TPOT p{self.percentile:g} ≤ {self.tpot * 1000:g} ms ({1 / self.tpot:.1f} t/s each)")
        return ", ".join(parts) or "no limits"


@dataclass(frozen=True)
class Distribution:
    """Mean, median, p90, p99 of one latency, in milliseconds, over n values."""

    n: int = 0
    mean: float = 0.0
    median: float = 0.0
    p90: float = 0.0
    p99: float = 0.0

    def at(self, percentile: float) -> float:
        return {50.0: self.median, 90.0: self.p90, 99.0: self.p99}.get(percentile, self.p90)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation between closest ranks (numpy's default, which vLLM uses)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(seconds: Sequence[float]) -> Distribution:
    """Summarise latencies given in seconds as milliseconds."""
    if not seconds:
        return Distribution()
    ms = [s * 1000.0 for s in seconds]
    return Distribution(n=len(ms), mean=sum(ms) / len(ms), median=percentile(ms, 50), p90=percentile(ms, 90),
                        p99=percentile(ms, 99))


@dataclass
class LoadSummary:
    """One load level: how many people at once (or how many requests per second), and how it went."""

    concurrency: int
    rate: float | None  # requests per second for an open (Poisson) load; None for a fixed concurrency
    duration_s: float
    completed: int
    failed: int
    input_tokens: int
    output_tokens: int
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    ttft: Distribution
    tpot: Distribution
    itl: Distribution
    e2e: Distribution
    goodput: float  # requests per second that met the SLO
    slo: Slo
    slo_met: bool
    per_user_tps: float  # 1 / TPOT at the SLO percentile: the speed at least that share of requests got
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadSummary:
        values = dict(data)
        for name in ("ttft", "tpot", "itl", "e2e"):
            values[name] = Distribution(**values[name])
        values["slo"] = Slo(**values["slo"])
        values["errors"] = list(values.get("errors", []))
        return cls(**values)


def summarize_load(records: Sequence[RequestRecord], *, duration_s: float, slo: Slo, concurrency: int,
                   rate: float | None = None) -> LoadSummary:
    """vLLM's figures for one level; the SLO is met when the chosen percentile of TTFT and TPOT are within limits
    and no request failed."""
    done = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    duration = max(duration_s, 1e-9)
    inputs = sum(r.prompt_tokens for r in done)
    outputs = sum(r.output_tokens for r in done)
    ttft = distribution([r.ttft for r in done if r.ttft is not None])
    tpot = distribution([r.tpot for r in done if r.tpot is not None])
    itl = distribution([gap for r in done for gap in r.itl])
    e2e = distribution([r.e2e for r in done if r.e2e is not None])
    met = bool(done) and not failed
    if slo.ttft is not None:
        met = met and ttft.at(slo.percentile) <= slo.ttft * 1000.0
    if slo.tpot is not None and tpot.n:
        met = met and tpot.at(slo.percentile) <= slo.tpot * 1000.0
    errors = sorted({r.error for r in failed if r.error})
    return LoadSummary(
        concurrency=concurrency, rate=rate, duration_s=duration_s, completed=len(done), failed=len(failed),
        input_tokens=inputs, output_tokens=outputs, request_throughput=len(done) / duration,
        output_throughput=outputs / duration, total_token_throughput=(inputs + outputs) / duration,
        ttft=ttft, tpot=tpot, itl=itl, e2e=e2e, goodput=sum(1 for r in done if slo.met_by(r)) / duration,
        slo=slo, slo_met=met, errors=errors,
        per_user_tps=1000.0 / tpot.at(slo.percentile) if tpot.at(slo.percentile) > 0 else 0.0)


def capacity_sentence(levels: Sequence[LoadSummary], *, model: str, machine: str) -> str:
    """The answer in one sentence: the largest load that met the SLO, what each person got, and the total."""
    passing = [level for level in levels if level.slo_met]
    if not levels:
        return f"{model} on {machine}: nothing was measured."
    if not passing:
        first = levels[0]
        return (f"{model} on {machine} does not meet {first.slo.describe()} even for {first.concurrency} "
                f"{'person' if first.concurrency == 1 else 'people'} at once.")
    best = max(passing, key=lambda level: level.concurrency)
    people = "person" if best.concurrency == 1 else "people"
    return (f"{model} on {machine} serves {best.concurrency} {people} at once at ≥ {best.per_user_tps:.1f} t/s "
            f"each, TTFT p{best.slo.percentile:g} {best.ttft.at(best.slo.percentile) / 1000:.2f} s; "
            f"{best.output_throughput:.1f} tokens/s in all.")
