"""What a million tokens cost at a measured load (many people at once), against a hosted API's input and output
prices for the same traffic."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from models.bench.capacity.serving import LoadSummary
from models.results.cost import JOULES_PER_KWH
from models.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadCost:
    """One load level's cost, in the settings' currency; per 1M tokens of the level's own input/output mix."""

    currency: str
    concurrency: int
    seconds: float
    input_tokens: int
    output_tokens: int
    joules: float
    energy_is_estimate: bool
    energy: float  # electricity for the level
    hardware: float  # the hardware's lifetime cost spread over the level's seconds
    per_mtok_output: float  # everything the level cost, per million output tokens (input work included)
    per_mtok_tokens: float  # the same cost per million tokens in and out together
    api_same_traffic: float  # what the API would charge for the level's input and output tokens
    api_per_mtok_output: float  # that API charge per million output tokens, to compare with per_mtok_output

    @property
    def total(self) -> float:
        return self.energy + self.hardware

    @property
    def cheaper_than_api(self) -> bool:
        return self.total < self.api_same_traffic

    def describe(self) -> str:
        c = self.currency
        verdict = "cheaper" if self.cheaper_than_api else "dearer"
        source = "estimated" if self.energy_is_estimate else "measured"
        return (f"{self.per_mtok_output:.3f} {c} per 1M output tokens at {self.concurrency} at once "
                f"(energy {source}, input processing included); the API would charge {self.api_per_mtok_output:.3f} "
                f"{c} for the same traffic, so running here is {verdict}.")


def load_cost(summary: LoadSummary, settings: Settings, *, joules: float | None = None) -> LoadCost | None:
    """The cost of one level: measured joules if given, else the settings' system power over the level's
    seconds; None when the level produced nothing or no power figure exists."""
    if summary.output_tokens <= 0 or summary.duration_s <= 0:
        return None
    estimate = joules is None
    if joules is None:
        if settings.system_power_watts <= 0:
            return None
        joules = settings.system_power_watts * summary.duration_s
    energy = joules / JOULES_PER_KWH * settings.electricity_price_per_kwh
    lifetime_seconds = settings.hardware_lifetime_years * 365.25 * settings.hardware_hours_per_day * 3600
    hardware = settings.hardware_cost / lifetime_seconds * summary.duration_s
    total = energy + hardware
    inputs, outputs = summary.input_tokens, summary.output_tokens
    api = (inputs * settings.api_input_price_per_mtok + outputs * settings.api_price_per_mtok) / 1e6
    return LoadCost(currency=settings.currency, concurrency=summary.concurrency, seconds=summary.duration_s,
                    input_tokens=inputs, output_tokens=outputs, joules=joules, energy_is_estimate=estimate,
                    energy=energy, hardware=hardware, per_mtok_output=total / outputs * 1e6,
                    per_mtok_tokens=total / (inputs + outputs) * 1e6, api_same_traffic=api,
                    api_per_mtok_output=api / outputs * 1e6)


def capacity_cost(levels: Sequence[LoadSummary], settings: Settings) -> LoadCost | None:
    """The cost at the largest load that met the SLO (the load the answer names), or None."""
    passing = [level for level in levels if level.slo_met]
    if not passing:
        return None
    return load_cost(max(passing, key=lambda level: level.concurrency), settings)
