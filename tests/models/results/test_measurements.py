"""Batched and load measurements in the results store (the migration, the CLI saving them), and their cost."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from models.bench.capacity.serving import RequestRecord, Slo, summarize_load
from models.cli import main
from models.paths import results_db_path
from models.results.load_cost import capacity_cost, load_cost
from models.results.measurements import Measurement, delete_measurements, list_measurements, record_measurement
from models.results.schema import MIGRATIONS, SCHEMA_VERSION
from models.results.store import ResultsStore
from models.settings import Settings
from tests.models.results.conftest import MACHINE_A, make_result


def _level(concurrency: int, *, seconds: float = 10.0, ttft: float = 0.5) -> object:
    records = [RequestRecord(100, 50, 0.0, [ttft + 0.02 * i for i in range(50)], ttft + 0.98)
               for _ in range(concurrency * 2)]
    return summarize_load(records, duration_s=seconds, slo=Slo(ttft=1.0, tpot=0.05), concurrency=concurrency)


def test_a_store_of_the_previous_schema_gains_the_table_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with ResultsStore(path) as store:
        store.record_result(make_result(), machine=MACHINE_A)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE measurements")
    db.execute("PRAGMA user_version = 2")  # schema 2 had no measurements table
    db.commit()
    db.close()
    with ResultsStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
        assert len(store.list_runs()) == 1 and list_measurements(store) == []
    assert (tmp_path / "old.sqlite3.v2.bak").exists()


def test_measurements_round_trip_and_outlive_deleting_runs(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "s.sqlite3") as store:
        run_id = store.record_result(make_result(), machine=MACHINE_A)
        model = {"file": make_result().model_filename, "size": 1, "repo": ""}
        ident = record_measurement(store, Measurement(kind="load", target="llama.cpp", settings={"plan": {}},
                                                      data={"levels": [{"concurrency": 2}]}, answer="serves 2",
                                                      model=model, machine=MACHINE_A))
        store.delete_runs([run_id])  # the model and machine the measurement names must stay
        (back,) = list_measurements(store, kind="load")
        assert (back.id, back.answer, back.data, back.model["file"]) == (ident, "serves 2",
                                                                          {"levels": [{"concurrency": 2}]}, model["file"])
        assert list_measurements(store, kind="batched") == []
        assert delete_measurements(store, [ident]) == 1 and list_measurements(store) == []


def test_cli_sweeps_are_saved_with_their_rows(starter_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batched", str(starter_model), "-npp", "16", "-ntg", "4", "-npl", "1,2", "-t", "1", "-o",
                 "jsonl"]) == 0
    assert main(["load", str(starter_model), "--profile", "tiny", "--concurrency", "1", "--requests", "2", "-t",
                 "1", "--slo-ttft", "120s", "--slo-tpot", "30s"]) == 0
    out = capsys.readouterr().out
    assert "Cost at that load:" in out
    with ResultsStore(results_db_path()) as store:
        (load,) = list_measurements(store, kind="load")
        (batched,) = list_measurements(store, kind="batched")
    assert [row["pl"] for row in batched.data["rows"]] == [1, 2]
    assert batched.settings["plan"]["n_parallel"] == [1, 2] and batched.model["file"] == starter_model.name
    assert [level["concurrency"] for level in load.data["levels"]] == [1]
    # Memory measured while the level's context was allocated, beside the figures.
    assert load.data["levels"][0]["mem_peak"] >= load.data["levels"][0]["mem_rss_anon"] > 0
    assert len(load.data["records"][0]) == 2 and "serves 1 person" in load.answer
    json.dumps(load.data)
    assert main(["batched", str(starter_model), "-npp", "16", "-ntg", "4", "-npl", "1", "-t", "1", "-o", "jsonl",
                 "--no-save"]) == 0
    with ResultsStore(results_db_path()) as store:
        assert len(list_measurements(store, kind="batched")) == 1


def test_cost_at_load_against_the_api_for_the_same_traffic() -> None:
    settings = Settings(electricity_price_per_kwh=0.36, hardware_cost=1000.0, hardware_lifetime_years=1.0,
                        hardware_hours_per_day=10.0, system_power_watts=360.0, api_price_per_mtok=2.0,
                        api_input_price_per_mtok=0.5)
    level = _level(4)  # 8 requests of 100 tokens in, 50 out, over 10 s
    cost = load_cost(level, settings)  # type: ignore[arg-type]
    assert cost is not None and cost.energy_is_estimate
    assert cost.joules == pytest.approx(3600.0)  # 360 W for 10 s
    assert cost.energy == pytest.approx(0.001 * 0.36)  # 1 Wh at 0.36 per kWh
    assert cost.hardware == pytest.approx(1000.0 / (365.25 * 10 * 3600) * 10)
    assert cost.per_mtok_output == pytest.approx((cost.energy + cost.hardware) / 400 * 1e6)
    assert cost.api_same_traffic == pytest.approx((800 * 0.5 + 400 * 2.0) / 1e6)
    measured = load_cost(level, settings, joules=1800.0)  # type: ignore[arg-type]
    assert measured is not None and not measured.energy_is_estimate and measured.energy == pytest.approx(cost.energy / 2)
    assert load_cost(level, Settings(system_power_watts=0.0)) is None  # type: ignore[arg-type]
    # The cost the answer quotes is the largest load that met the SLO.
    picked = capacity_cost([_level(1), _level(2), _level(4, ttft=3.0)], settings)  # type: ignore[list-item]
    assert picked is not None and picked.concurrency == 2
