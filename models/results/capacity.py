"""Stored load tests read back: their levels, answer and cost; and the recorder that keeps the app's batched and
load jobs as measurements."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

from models.bench.capacity.serving import LoadSummary, capacity_sentence
from models.results.load_cost import LoadCost, load_cost
from models.results.measurements import Measurement, MeasurementRecorder, model_identity
from models.settings import Settings

log = logging.getLogger(__name__)

_SUMMARY_FIELDS = {f.name for f in dataclasses.fields(LoadSummary)}
EventCallback = Callable[[Any, Any], None]


def started(measurement: Measurement) -> str:
    """When a measurement started, as people read it: "2026-11-27 04:22" (UTC)."""
    return measurement.started_at[:16].replace("T", " ")


def load_levels(measurement: Measurement) -> list[LoadSummary]:
    """A load measurement's levels as summaries (the recorder adds energy keys beside the summary's own)."""
    levels = []
    for data in measurement.data.get("levels") or []:
        try:
            levels.append(LoadSummary.from_json({k: v for k, v in data.items() if k in _SUMMARY_FIELDS}))
        except (TypeError, KeyError, ValueError) as error:  # a level from a newer or damaged store: skipped, said
            log.warning("skipping an unreadable load level in measurement %s: %s", measurement.id, error)
    return levels


def _passing(levels: Sequence[LoadSummary]) -> LoadSummary | None:
    passing = [level for level in levels if level.slo_met]
    return max(passing, key=lambda level: level.concurrency) if passing else None


def measured_joules(measurement: Measurement, concurrency: int) -> float | None:
    """The joules a sensor measured for the level of `concurrency` people, or None (none, or only an estimate)."""
    for data in measurement.data.get("levels") or []:
        if int(data.get("concurrency", -1)) == concurrency and data.get("joules") is not None:
            return None if data.get("energy_is_estimate") else float(data["joules"])
    return None


def measurement_cost(measurement: Measurement, settings: Settings) -> LoadCost | None:
    """The cost at the load the answer names (the largest level that met the SLO), with the energy a sensor
    measured for that level where there is one, else the settings' watts; None when no level met the SLO."""
    best = _passing(load_levels(measurement))
    if best is None:
        return None
    return load_cost(best, settings, joules=measured_joules(measurement, best.concurrency))


def capacity_people(measurement: Measurement) -> int:
    """How many people at once the answer names (0 when no level met the SLO)."""
    best = _passing(load_levels(measurement))
    return best.concurrency if best is not None else 0


def measurement_answer(measurement: Measurement, *, machine: str = "this machine") -> str:
    """The one-sentence answer for a load measurement (its stored one where it has it)."""
    if measurement.answer:
        return measurement.answer
    return capacity_sentence(load_levels(measurement), model=measurement.model_name, machine=machine)


def _job_settings(job: Any) -> dict[str, Any]:
    plan = job.load if job.load is not None else job.batched
    return {"plan": plan.to_json(), "params": dataclasses.asdict(job.params)}


def with_measurements(record: EventCallback, close: Callable[[], None], *, machine: dict[str, Any],
                      settings: Settings) -> tuple[EventCallback, Callable[[], None]]:
    """Wrap a run recorder (models.results.recorder.open_recorder) so that a batched or load job's events are kept
    as one measurement (MeasurementRecorder) and every other job's results go to `record` as before.

    Called on the queue's thread; the store for measurements is opened there on the first such job."""
    from models.errors import StoreError
    from models.machine.energy import EnergyMeter
    from models.results.store import ResultsStore

    state: dict[str, Any] = {"job": None, "recorder": None, "store": None}

    def recorder_for(job: Any) -> MeasurementRecorder:
        if state["job"] is not job:
            if state["store"] is None:
                try:
                    state["store"] = ResultsStore()
                except StoreError as error:
                    state["store"] = error
            store = state["store"] if isinstance(state["store"], ResultsStore) else None
            meter = EnergyMeter(fallback_watts=settings.system_power_watts or None)
            kind = job.method

            def answer(m: Measurement) -> str:
                if kind != "load":
                    return ""
                return capacity_sentence(load_levels(m), model=m.model_name, machine="this machine")

            made = MeasurementRecorder(store, kind=kind, target="llama.cpp", settings=_job_settings(job),
                                       model=model_identity(job.model_path), machine=machine,
                                       energy_meter=meter if meter.available else None, answer=answer)
            if store is None:
                made.error = state["store"]
            state["job"], state["recorder"] = job, made
        return state["recorder"]

    def on_event(job: Any, event: Any) -> None:
        if getattr(job, "method", "tests") in ("batched", "load"):
            made = recorder_for(job)
            made(job, event)
            if made.error is not None and event.kind == "finished":
                raise made.error  # the queue says "Result not saved: …" in the item's log
        else:
            record(job, event)

    def close_all() -> None:
        close()
        if isinstance(state["store"], ResultsStore):
            state["store"].close()

    return on_event, close_all


def capacity_for(measurements: Sequence[Measurement], *, model_file: str, machine_key: str) -> Measurement | None:
    """The newest load test in llama.cpp of this model file on this machine whose answer names a load (a level
    met the SLO): what `compare --cost` prices instead of one stream. `measurements` newest first."""
    from models.results.store import fingerprint_sha

    for m in measurements:
        if (m.kind == "load" and m.target == "llama.cpp" and m.model.get("file") == model_file
                and fingerprint_sha(m.machine) == machine_key and capacity_people(m) > 0):
            return m
    return None
