"""Settings (defaults, atomic write, a corrupt file kept as .bak) and the cost per million tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.results.compare import compare_runs
from models.results.cost import cost_per_million_tokens, estimated_joules_per_token, format_tokens, row_cost
from models.results.store import EnergyFigures, ResultsStore
from models.paths import settings_path
from models.settings import Settings, describe_settings, load_settings, save_settings

from .conftest import MACHINE_A, make_result


def test_defaults_when_there_is_no_file() -> None:
    settings = load_settings()
    assert settings == Settings() and settings.warnings == []
    assert settings.currency == "EUR" and settings.electricity_price_per_kwh > 0


def test_save_and_load_round_trip_in_the_app_home(isolated_home: Path) -> None:
    settings = Settings(electricity_price_per_kwh=0.12, currency="USD", default_threads=4)
    path = save_settings(settings)
    assert path == settings_path() and path.parent == isolated_home
    assert json.loads(path.read_text())["version"] == 1
    assert load_settings() == settings
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []  # no temp file left


def test_a_corrupt_file_gives_defaults_a_warning_and_is_kept_as_bak() -> None:
    path = settings_path()
    path.write_text('{"electricity_price_per_kwh": 0.2, "curr')  # cut off mid-write by an older tool
    settings = load_settings()
    assert settings == Settings()
    assert len(settings.warnings) == 1 and "defaults are used" in settings.warnings[0]
    assert path.with_name("settings.json.bak").read_text().endswith('"curr')
    assert not path.exists()


def test_a_bad_value_falls_back_to_its_default_only() -> None:
    settings_path().write_text(json.dumps({"electricity_price_per_kwh": "cheap", "hardware_cost": 900,
                                           "hardware_lifetime_years": -1, "default_threads": True}))
    settings = load_settings()
    assert settings.hardware_cost == 900.0
    assert settings.electricity_price_per_kwh == Settings().electricity_price_per_kwh
    assert settings.hardware_lifetime_years == Settings().hardware_lifetime_years
    assert settings.default_threads == 0
    assert len(settings.warnings) == 3


def test_save_refuses_an_invalid_value_and_leaves_the_file_alone() -> None:
    save_settings(Settings(hardware_cost=800))
    before = settings_path().read_text()
    with pytest.raises(ValueError, match="hardware_cost"):
        save_settings(Settings(hardware_cost=-5))
    assert settings_path().read_text() == before


def test_settings_are_described_with_units_in_the_currency() -> None:
    info = {i.name: i for i in describe_settings(Settings(currency="CHF"))}
    assert info["electricity_price_per_kwh"].unit == "CHF/kWh"
    assert info["api_price_per_mtok"].unit == "CHF per 1M tokens"
    assert info["system_power_watts"].unit == "W" and "warnings" not in info


def test_cost_per_million_tokens_and_break_even() -> None:
    settings = Settings(electricity_price_per_kwh=0.36, hardware_cost=1461.0, hardware_lifetime_years=1.0,
                        hardware_hours_per_day=10.0, api_price_per_mtok=2.0)
    # 100 t/s at 0.9 J/token: 1M tokens = 0.9 MJ = 0.25 kWh = 0.09; lifetime 3652.5 h at 0.4/h, 360k tok/h.
    cost = cost_per_million_tokens(tokens_per_second=100.0, joules_per_token=0.9, settings=settings)
    assert cost.energy_per_mtok == pytest.approx(0.09)
    assert cost.hardware_per_mtok == pytest.approx(0.4 / 0.36)
    assert cost.total_per_mtok == pytest.approx(0.09 + 0.4 / 0.36)
    assert cost.hardware_per_month == pytest.approx(121.75)
    assert cost.break_even_tokens_per_month == pytest.approx(121.75 / ((2.0 - 0.09) / 1e6))
    assert cost.capacity_tokens_per_month == pytest.approx(100 * 3600 * 10 * 365.25 / 12)
    assert cost.cheaper_than_api_at_capacity and cost.break_even_within_capacity


def test_no_break_even_when_the_api_costs_less_than_our_electricity() -> None:
    settings = Settings(electricity_price_per_kwh=0.5, api_price_per_mtok=0.05)
    cost = cost_per_million_tokens(tokens_per_second=5.0, joules_per_token=20.0, settings=settings,
                                   energy_is_estimate=True)
    assert cost.break_even_tokens_per_month is None and not cost.break_even_within_capacity
    assert cost.energy_is_estimate and not cost.cheaper_than_api_at_capacity
    with pytest.raises(ValueError):
        cost_per_million_tokens(tokens_per_second=0, joules_per_token=1, settings=settings)


def test_estimate_and_formatting() -> None:
    assert estimated_joules_per_token(tokens_per_second=50.0, watts=65.0) == pytest.approx(1.3)
    assert format_tokens(1_234_567) == "1.2 M" and format_tokens(950) == "950"


def test_row_cost_uses_measured_energy_or_the_settings_watts_as_an_estimate(store: ResultsStore) -> None:
    measured = store.record_result(make_result(n_prompt=0, n_gen=128, ts=(50.0, 50.0)), machine=MACHINE_A,
                                   energy=EnergyFigures(joules=25.6, seconds=5.12, source="rapl", is_estimate=False))
    unmeasured = store.record_result(make_result(n_prompt=0, n_gen=128, ts=(20.0, 20.0), n_threads=8),
                                     machine=MACHINE_A)
    pp_only = store.record_result(make_result(n_threads=2), machine=MACHINE_A)
    rows = {r.run_ids[0]: r for r in compare_runs(store.get_runs([measured, unmeasured, pp_only])).rows}
    settings = Settings(system_power_watts=60.0)
    cost = row_cost(rows[measured], settings=settings)
    assert cost is not None and not cost.energy_is_estimate
    assert cost.joules_per_token == pytest.approx(25.6 / 256) and cost.tokens_per_second == 50.0
    estimate = row_cost(rows[unmeasured], settings=settings)
    assert estimate is not None and estimate.energy_is_estimate and estimate.joules_per_token == pytest.approx(3.0)
    assert row_cost(rows[unmeasured], settings=Settings()) is None  # no sensor and no watts figure
    assert row_cost(rows[pp_only], settings=settings) is None  # no generation test


def test_cost_pairs_one_tests_rate_with_that_same_tests_energy(store: ResultsStore) -> None:
    def energy(joules: float) -> EnergyFigures:
        return EnergyFigures(joules=joules, seconds=1.0, source="rapl", is_estimate=False)

    # One sitting, every test with its own metered energy; tokens per test = (n_prompt + n_gen) x 2 reps.
    for kwargs, joules in (
        (dict(n_prompt=512, ts=(2000.0, 2000.0)), 102.4),  # 0.1 J/token
        (dict(n_prompt=0, n_gen=100, ts=(60.0, 60.0)), 100.0),  # 0.5 J/token
        (dict(n_prompt=0, n_gen=1000, ts=(50.0, 50.0)), 1200.0),  # 0.6 J/token: the one to use
        (dict(n_prompt=0, n_gen=1000, n_depth=4096, ts=(20.0, 20.0)), 4000.0),  # 2.0 J/token, at depth
        (dict(n_prompt=512, n_gen=128, ts=(300.0, 300.0)), 320.0),  # 0.25 J/token, prompt and generation
    ):
        store.record_result(make_result(**kwargs), machine=MACHINE_A, job="sweep", energy=energy(joules))
    (row,) = compare_runs(store.list_runs()).rows
    assert row.cells["energy tg1000"].mean == pytest.approx(0.6)
    assert row.cells["energy tg1000 @ d4096"].mean == pytest.approx(2.0)
    cost = row_cost(row, settings=Settings(electricity_price_per_kwh=0.36))
    # tg1000, not tg100 (which sorts first as text), and not tg1000 at depth; its own rate and its own energy.
    assert cost is not None and cost.test == "tg1000"
    assert cost.tokens_per_second == 50.0 and cost.joules_per_token == pytest.approx(0.6)
    assert cost.energy_per_mtok == pytest.approx(0.6 * 1e6 / 3.6e6 * 0.36)
