"""Measurements by other methods than llama-bench's tests, kept in the results store: batched sweeps, serving
load tests and quality runs, one row each with its settings, its rows or levels, and its one-line answer."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from models.errors import StoreError
from models.hub.names import parse_quant
from models.results.store import EnergyFigures, ResultsStore, _now, _rowid, repo_of_path

log = logging.getLogger(__name__)

Kind = Literal["batched", "load", "quality", "answers"]
KINDS: tuple[str, ...] = ("batched", "load", "quality", "answers")


@dataclass
class Measurement:
    """One stored sweep. `data` holds what the method produced: {"rows": [...]} for batched, {"levels": [...],
    "records": [...]} for load, the quality result for quality; `settings` the plan and parameters."""

    kind: str
    target: str  # "llama.cpp" for a run here, or the endpoint's URL
    settings: dict[str, Any]
    data: dict[str, Any]
    answer: str = ""
    model: dict[str, Any] = field(default_factory=dict)  # repo, file, sha256, quant, size, model_type
    machine: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    error: str = ""
    started_at: str = ""
    ended_at: str = ""
    energy: EnergyFigures | None = None
    id: int = 0
    uid: str = ""

    @property
    def model_name(self) -> str:
        return Path(self.model.get("file", "")).name or self.settings.get("server_model", "") or self.target


def model_identity(path: Path | str, *, model_type: str = "") -> dict[str, Any]:
    """What the store keeps of a model file: its name, size, quant and repo (from the Hugging Face cache path)."""
    file = Path(path)
    try:
        size = file.stat().st_size
    except OSError:
        size = 0
    return {"file": file.name, "size": size, "repo": repo_of_path(str(file)), "model_type": model_type,
            "quant": parse_quant(file.name) or ""}


def record_measurement(store: ResultsStore, measurement: Measurement) -> int:
    """Commit one measurement now (durable on return) and give its id."""
    if measurement.kind not in KINDS:
        raise StoreError(f"Not a kind of measurement the store keeps: {measurement.kind!r}.")
    m, energy = measurement, measurement.energy
    # The store's own helpers: a measurement shares the machines and models tables with the runs.
    with store._write("save the measurement"):
        machine_ref = store._machine_ref(m.machine)
        model_ref = store._model_ref(m.model) if m.model.get("file") else None
        cursor = store._db.execute(
            "INSERT INTO measurements (uid, kind, machine_ref, model_ref, target, status, error, started_at, "
            "ended_at, settings, data, answer, energy_j, energy_seconds, energy_source, energy_is_estimate) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (m.uid or uuid.uuid4().hex, m.kind, machine_ref, model_ref, m.target, m.status, m.error,
             m.started_at or _now(), m.ended_at or _now(), json.dumps(m.settings, default=str),
             json.dumps(m.data, default=str), m.answer, energy.joules if energy else None,
             energy.seconds if energy else None, energy.source if energy else "",
             int(energy.is_estimate) if energy else 0))
        return _rowid(cursor)


_SELECT = ("SELECT x.id, x.uid, x.kind, x.target, x.status, x.error, x.started_at, x.ended_at, x.settings, x.data, "
           "x.answer, x.energy_j, x.energy_seconds, x.energy_source, x.energy_is_estimate, m.fingerprint, "
           "d.repo, d.file, d.sha256, d.quant, d.size, d.model_type FROM measurements x "
           "JOIN machines m ON m.id = x.machine_ref LEFT JOIN models d ON d.id = x.model_ref")


def list_measurements(store: ResultsStore, *, kind: str | None = None, limit: int | None = None,
                      ids: Iterable[int] | None = None) -> list[Measurement]:
    """Stored measurements, newest first; of one kind, or with the given ids."""
    where, params = [], []  # type: list[str], list[Any]
    if kind is not None:
        where.append("x.kind = ?")
        params.append(kind)
    if ids is not None:
        id_list = [int(i) for i in ids]
        if not id_list:
            return []
        where.append(f"x.id IN ({','.join('?' * len(id_list))})")
        params += id_list
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY x.started_at DESC, x.id DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    with store._lock:
        try:
            rows = store._db.execute(sql, params).fetchall()
        except Exception as error:  # an old read-only store without the table reads as having none
            if "no such table" in str(error):
                return []
            raise
    return [_measurement(row) for row in rows]


def delete_measurements(store: ResultsStore, ids: Iterable[int]) -> int:
    """Delete measurements by id; returns how many went."""
    id_list = [int(i) for i in ids]
    if not id_list:
        return 0
    with store._write("delete measurements"):
        return int(store._db.execute(f"DELETE FROM measurements WHERE id IN ({','.join('?' * len(id_list))})",
                                     id_list).rowcount)


def _measurement(row: Any) -> Measurement:
    (ident, uid, kind, target, status, error, started, ended, settings, data, answer, joules, seconds, source,
     estimate, machine, repo, file, sha, quant, size, model_type) = row
    energy = EnergyFigures(joules=joules, seconds=seconds or 0.0, source=source,
                           is_estimate=bool(estimate)) if joules is not None else None
    model = {"repo": repo or "", "file": file or "", "sha256": sha or "", "quant": quant or "", "size": size or 0,
             "model_type": model_type or ""} if file else {}
    return Measurement(kind=kind, target=target, settings=json.loads(settings), data=json.loads(data), answer=answer,
                       model=model, machine=json.loads(machine), status=status, error=error, started_at=started,
                       ended_at=ended, energy=energy, id=int(ident), uid=uid)


class MeasurementRecorder:
    """An on_event callback for the runner that gathers a batched or load job's rows or levels (with the energy
    of each, where a meter reads it), or a quality job's result, and stores it as one measurement when the job
    ends."""

    def __init__(self, store: ResultsStore | None, *, kind: str, target: str, settings: dict[str, Any],
                 model: dict[str, Any], machine: dict[str, Any], energy_meter: Any = None,
                 answer: Any = None) -> None:
        self.store = store
        self.measurement = Measurement(kind=kind, target=target, settings=settings, data={}, model=model,
                                       machine=machine, started_at=_now())
        self.meter = energy_meter
        self.answer = answer  # (measurement) -> str, made when the sweep ends
        self.saved_id = 0
        self.error: StoreError | None = None
        self._memory: dict[str, Any] = {}
        self._metering = False

    def _lap(self) -> Any:
        if self.meter is None:
            return None
        if not self._metering:
            self.meter.start()
            self._metering = True
            return None
        return self.meter.lap()

    def __call__(self, _job: Any, event: Any) -> None:
        data, m = event.data, self.measurement
        if event.kind == "progress" and data.get("phase") == "run":
            self._lap()  # a test or level starts: what the meter read before belongs to none of them
        elif event.kind == "batched":
            reading = self._lap()
            row = dict(data.get("row") or {}, test=data.get("test", ""), skipped=data.get("row") is None)
            if self._memory:
                row.update(mem_rss_anon=self._memory.get("rss_anon"), mem_peak=self._memory.get("peak"))
            if reading is not None:
                row.update(joules=reading.joules, energy_is_estimate=reading.is_estimate)
            m.data.setdefault("rows", []).append(row)
        elif event.kind == "memory":
            self._memory = dict(data)  # the worker's latest figures: after each batched row and each load level
        elif event.kind == "load_level":
            reading = self._lap()
            level = dict(data.get("summary") or {})
            if self._memory:
                level.update(mem_rss_anon=self._memory.get("rss_anon"), mem_peak=self._memory.get("peak"))
            if reading is not None:
                level.update(joules=reading.joules, energy_source=reading.source,
                             energy_is_estimate=reading.is_estimate)
            m.data.setdefault("levels", []).append(level)
            m.data.setdefault("records", []).append(data.get("records") or [])
        elif event.kind in ("quality", "answer"):
            m.data.update(data.get("result") or {})  # one quality or answers job is one model's result
        elif event.kind == "failure":
            m.status, m.error = "failed", str(data.get("message", ""))
        elif event.kind == "finished":
            if data.get("cancelled"):
                m.status = "cancelled"
            self.save()

    def save(self) -> int:
        """Store what was gathered (once); a store that refuses it leaves the error in `self.error`."""
        m = self.measurement
        if self.saved_id or self.store is None or not (m.data or m.status != "ok"):
            return self.saved_id
        m.ended_at = _now()
        if self.answer is not None:
            m.answer = self.answer(m)
        try:
            self.saved_id = record_measurement(self.store, m)
        except StoreError as error:
            log.warning("The measurement could not be saved: %s", error)
            self.error = error
        return self.saved_id


def open_measurement_recorder(*, kind: str, target: str, settings: dict[str, Any], model_path: Path | None,
                              answer: Any = None, meter_energy: bool = True) -> MeasurementRecorder:
    """A recorder on the results store for this machine, with the energy meter the settings allow; when the store
    cannot be opened the recorder keeps nothing and says why in `.error`."""
    from models.machine.energy import EnergyMeter
    from models.machine.hardware import machine_fingerprint
    from models.settings import load_settings

    store: ResultsStore | None
    try:
        store, error = ResultsStore(), None
    except StoreError as failure:
        store, error = None, failure
    meter = None
    if meter_energy:
        meter = EnergyMeter(fallback_watts=load_settings().system_power_watts or None)
        meter = meter if meter.available else None
    recorder = MeasurementRecorder(store, kind=kind, target=target, settings=settings,
                                   model=model_identity(model_path) if model_path else {},
                                   machine=machine_fingerprint(), energy_meter=meter, answer=answer)
    recorder.error = error
    return recorder
