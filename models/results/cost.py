"""What a million tokens cost on this machine (energy plus hardware wear), against a hosted API's price."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from models.results.compare import CompareRow, energy_key
from models.settings import Settings

log = logging.getLogger(__name__)

JOULES_PER_KWH = 3.6e6
DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True)
class CostEstimate:
    """Cost per million tokens and where it comes from; money in `currency`."""

    currency: str
    tokens_per_second: float
    joules_per_token: float
    energy_is_estimate: bool
    energy_per_mtok: float  # electricity
    hardware_per_mtok: float  # hardware cost spread over its lifetime hours at the measured rate
    total_per_mtok: float
    api_per_mtok: float
    hardware_per_month: float  # the fixed cost of owning the machine, whatever it produces
    capacity_tokens_per_month: float  # what the machine can produce in its hours of use
    break_even_tokens_per_month: float | None  # None: the API is cheaper than our electricity alone
    test: str = ""  # the generation test whose rate and energy these are (e.g. "tg128")

    @property
    def cheaper_than_api_at_capacity(self) -> bool:
        """Whether running flat out during the hours of use beats the API."""
        return self.total_per_mtok < self.api_per_mtok

    @property
    def break_even_within_capacity(self) -> bool:
        return self.break_even_tokens_per_month is not None and \
            self.break_even_tokens_per_month <= self.capacity_tokens_per_month


def cost_per_million_tokens(*, tokens_per_second: float, joules_per_token: float, settings: Settings,
                            energy_is_estimate: bool = False) -> CostEstimate:
    """Cost per 1M tokens = energy x electricity price + hardware cost per lifetime hour / tokens per hour.

    The hardware share assumes the machine generates at the measured rate through its hours of use; the
    break-even volume treats the hardware as a fixed monthly cost and electricity as the per-token cost:
    hardware_per_month + energy_per_token x V = api_price_per_token x V.
    """
    if tokens_per_second <= 0:
        raise ValueError("tokens_per_second must be positive")
    if joules_per_token < 0:
        raise ValueError("joules_per_token must not be negative")
    energy_per_mtok = joules_per_token * 1e6 / JOULES_PER_KWH * settings.electricity_price_per_kwh
    lifetime_hours = settings.hardware_lifetime_years * 365.25 * settings.hardware_hours_per_day
    hardware_per_hour = settings.hardware_cost / lifetime_hours
    hardware_per_mtok = hardware_per_hour / (tokens_per_second * 3600) * 1e6
    hardware_per_month = settings.hardware_cost / (settings.hardware_lifetime_years * 12)
    capacity = tokens_per_second * 3600 * settings.hardware_hours_per_day * DAYS_PER_MONTH
    margin_per_token = (settings.api_price_per_mtok - energy_per_mtok) / 1e6
    break_even = hardware_per_month / margin_per_token if margin_per_token > 0 else None
    return CostEstimate(currency=settings.currency, tokens_per_second=tokens_per_second,
                        joules_per_token=joules_per_token, energy_is_estimate=energy_is_estimate,
                        energy_per_mtok=energy_per_mtok, hardware_per_mtok=hardware_per_mtok,
                        total_per_mtok=energy_per_mtok + hardware_per_mtok, api_per_mtok=settings.api_price_per_mtok,
                        hardware_per_month=hardware_per_month, capacity_tokens_per_month=capacity,
                        break_even_tokens_per_month=break_even)


def estimated_joules_per_token(*, tokens_per_second: float, watts: float) -> float:
    """Energy per token from a power figure: what is used where no sensor reads energy."""
    if tokens_per_second <= 0:
        raise ValueError("tokens_per_second must be positive")
    return watts / tokens_per_second


def format_tokens(count: float) -> str:
    """A token count for people: 1.2 M, 350 k, 3.4 B."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count:.0f}"


def generation_test(row: CompareRow) -> str | None:
    """The test a row's cost is computed from: a plain generation test (tgN, no prompt) with a rate, at the
    smallest depth, and of those the one generating the most tokens (the steadiest rate); compared by number,
    never by name. None without one."""
    candidates = [(n_depth, -n_gen, name) for name, (n_prompt, n_gen, n_depth) in row.tests.items()
                  if n_prompt == 0 and n_gen > 0 and name in row.cells and row.cells[name].mean > 0]
    return min(candidates)[2] if candidates else None


def row_cost(row: CompareRow, *, settings: Settings) -> CostEstimate | None:
    """Cost per 1M generated tokens for a comparison row (one run), from one generation test (see
    generation_test, named in the estimate's `test`): its rate with the energy metered over that same test,
    else the settings' system watts over that rate (an estimate); None without a generation test or any
    energy figure."""
    test = generation_test(row)
    if test is None:
        return None
    rate = row.cells[test].mean
    energy = row.cells.get(energy_key(test))
    if energy is not None:
        cost = cost_per_million_tokens(tokens_per_second=rate, joules_per_token=energy.mean, settings=settings,
                                       energy_is_estimate=row.energy_is_estimate)
    elif settings.system_power_watts > 0:
        cost = cost_per_million_tokens(
            tokens_per_second=rate, settings=settings, energy_is_estimate=True,
            joules_per_token=estimated_joules_per_token(tokens_per_second=rate, watts=settings.system_power_watts))
    else:
        return None
    return dataclasses.replace(cost, test=test)
