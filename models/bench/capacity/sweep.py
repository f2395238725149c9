"""The capacity sweep: load levels in rising order, each judged against the SLO, stopping once it is clearly missed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from models.bench.capacity.profile import RequestShape, arrival_times, get_profile
from models.bench.capacity.serving import LoadSummary, RequestRecord, Slo, summarize_load
from models.errors import BenchmarkError

log = logging.getLogger(__name__)

MAX_LEVEL = 1024  # people at once; more is a typing mistake, not a plan
MAX_REQUESTS = 100_000

# run_level(concurrency, rate, shapes, arrivals) -> (records, duration in seconds)
LevelRunner = Callable[[int, "float | None", list[RequestShape], list[float]], tuple[list[RequestRecord], float]]


@dataclass(frozen=True)
class LoadPlan:
    """What a load test sweeps: people at once (closed loop) or request rates (open loop, `slots` at most in flight)."""

    profile: str = "chat"
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    rates: tuple[float, ...] = ()  # requests per second; when given, the sweep is over rates
    slots: int = 0  # open loop only: requests served at once (0 = the largest concurrency)
    requests: int = 0  # per level; 0 = four per person, at least 8
    slo: Slo = Slo(ttft=2.0, tpot=0.1)
    stop_early: bool = True
    seed: int = 0

    def problem(self) -> str | None:
        """Why this plan cannot run, in words, or None."""
        if not self.concurrency or min(self.concurrency) < 1 or max(self.concurrency) > MAX_LEVEL:
            return f"Concurrency levels must be between 1 and {MAX_LEVEL}, got {list(self.concurrency)}."
        if self.rates and min(self.rates) <= 0:
            return f"Request rates must be above 0 per second, got {list(self.rates)}."
        if not 0 <= self.requests <= MAX_REQUESTS:
            return f"Requests per level must be between 1 and {MAX_REQUESTS}, got {self.requests}."
        if self.slots < 0 or self.slots > MAX_LEVEL:
            return f"Slots must be between 1 and {MAX_LEVEL}, got {self.slots}."
        for name, value in (("TTFT", self.slo.ttft), ("TPOT", self.slo.tpot)):
            if value is not None and not value > 0:
                return f"The {name} limit must be above 0 seconds, got {value}."
        if not 0 < self.slo.percentile <= 100:
            return f"The SLO percentile must be in (0, 100], got {self.slo.percentile}."
        try:
            get_profile(self.profile)
        except BenchmarkError as error:
            return str(error)
        return None

    @property
    def serving_slots(self) -> int:
        """Sequences the engine serves at once: each level's concurrency, or `slots` for an open load."""
        return self.slots or max(self.concurrency)

    def levels(self) -> list[tuple[int, float | None]]:
        """(people at once, rate) per level in the order run."""
        if self.rates:
            return [(self.serving_slots, rate) for rate in sorted(self.rates)]
        return [(n, None) for n in sorted(set(self.concurrency))]

    def requests_for(self, concurrency: int) -> int:
        return self.requests or max(8, 4 * concurrency)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadPlan:
        slo = data.get("slo") or {}
        return cls(profile=str(data.get("profile", "chat")),
                   concurrency=tuple(int(v) for v in data.get("concurrency", (1, 2, 4, 8))),
                   rates=tuple(float(v) for v in data.get("rates", ())), slots=int(data.get("slots", 0)),
                   requests=int(data.get("requests", 0)),
                   slo=Slo(ttft=slo.get("ttft"), tpot=slo.get("tpot"), percentile=float(slo.get("percentile", 90))),
                   stop_early=bool(data.get("stop_early", True)), seed=int(data.get("seed", 0)))


def run_sweep(plan: LoadPlan, run_level: LevelRunner, *,
              on_level: Callable[[LoadSummary, list[RequestRecord]], None] | None = None,
              should_stop: Callable[[], bool] = lambda: False) -> list[LoadSummary]:
    """Run the levels in order with the same requests for each; stop after the first level that misses the SLO
    (a heavier load will not meet it either) unless told to run them all."""
    problem = plan.problem()
    if problem:
        raise BenchmarkError(problem)
    profile = get_profile(plan.profile)
    summaries: list[LoadSummary] = []
    for concurrency, rate in plan.levels():
        if should_stop():
            break
        count = plan.requests_for(concurrency if rate is None else plan.serving_slots)
        shapes = profile.draw(count, seed=plan.seed)
        arrivals = arrival_times(count, rate=rate, seed=plan.seed)
        records, duration = run_level(concurrency, rate, shapes, arrivals)
        summary = summarize_load(records, duration_s=duration, slo=plan.slo, concurrency=concurrency, rate=rate)
        summaries.append(summary)
        if on_level:
            on_level(summary, records)
        if plan.stop_early and not summary.slo_met and not should_stop():
            log.info("load level %s missed the SLO; stopping the sweep", rate or concurrency)
            break
    return summaries
