"""The results store's schema: its migrations, and how a file is recognised as a store (or refused) before use."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

from models.errors import StoreError

log = logging.getLogger(__name__)

# "Tknm": marks the file as ours, so a foreign SQLite database is never mistaken for a store.
APPLICATION_ID = 0x546B6E6D
SQLITE_MAGIC = b"SQLite format 3\x00"

# MIGRATIONS[i] takes a store from schema version i to i + 1; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: machines, models, runs.
    f"""
    PRAGMA application_id = {APPLICATION_ID};
    CREATE TABLE machines (
        id INTEGER PRIMARY KEY,
        fingerprint_sha TEXT NOT NULL UNIQUE,
        machine_id TEXT NOT NULL DEFAULT '',
        label TEXT NOT NULL DEFAULT '',
        fingerprint TEXT NOT NULL,
        first_seen TEXT NOT NULL
    );
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        identity_key TEXT NOT NULL UNIQUE,
        repo TEXT NOT NULL DEFAULT '',
        file TEXT NOT NULL DEFAULT '',
        sha256 TEXT NOT NULL DEFAULT '',
        quant TEXT NOT NULL DEFAULT '',
        n_params INTEGER NOT NULL DEFAULT 0,
        size INTEGER NOT NULL DEFAULT 0,
        model_type TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        job TEXT NOT NULL DEFAULT '',
        machine_ref INTEGER NOT NULL REFERENCES machines(id),
        model_ref INTEGER NOT NULL REFERENCES models(id),
        test TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'cancelled')),
        error TEXT NOT NULL DEFAULT '',
        started_at TEXT NOT NULL DEFAULT '',
        ended_at TEXT NOT NULL DEFAULT '',
        n_prompt INTEGER, n_gen INTEGER, n_depth INTEGER, n_threads INTEGER, n_gpu_layers INTEGER,
        n_batch INTEGER, n_ubatch INTEGER, type_k TEXT, type_v TEXT, flash_attn TEXT, use_mmap INTEGER,
        avg_ts REAL, stddev_ts REAL, avg_ns INTEGER, stddev_ns INTEGER,
        samples_ns TEXT NOT NULL DEFAULT '[]', samples_ts TEXT NOT NULL DEFAULT '[]',
        load_ms REAL, ttft_ms REAL, mem_rss_anon INTEGER, mem_rss_file INTEGER, mem_peak INTEGER,
        vram_used INTEGER, fit_estimate TEXT NOT NULL DEFAULT '{{}}',
        result TEXT NOT NULL
    );
    CREATE INDEX runs_model ON runs(model_ref);
    CREATE INDEX runs_started ON runs(started_at);
    """,
    # 1 -> 2: energy next to the measurement, and runs imported from another machine's report.
    """
    ALTER TABLE runs ADD COLUMN energy_j REAL;
    ALTER TABLE runs ADD COLUMN energy_seconds REAL;
    ALTER TABLE runs ADD COLUMN energy_source TEXT NOT NULL DEFAULT '';
    ALTER TABLE runs ADD COLUMN energy_is_estimate INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN imported_from TEXT NOT NULL DEFAULT '';
    ALTER TABLE runs ADD COLUMN imported_at TEXT NOT NULL DEFAULT '';
    CREATE INDEX runs_machine ON runs(machine_ref);
    """,
    # 2 -> 3: measurements by other methods than llama-bench's tests (batched decoding, serving load, quality),
    # each one sweep: its settings, its rows or levels as JSON, and the one-line answer.
    """
    CREATE TABLE measurements (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('batched', 'load', 'quality')),
        machine_ref INTEGER NOT NULL REFERENCES machines(id),
        model_ref INTEGER REFERENCES models(id),
        target TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'failed', 'cancelled')),
        error TEXT NOT NULL DEFAULT '',
        started_at TEXT NOT NULL DEFAULT '',
        ended_at TEXT NOT NULL DEFAULT '',
        settings TEXT NOT NULL DEFAULT '{}',
        data TEXT NOT NULL DEFAULT '{}',
        answer TEXT NOT NULL DEFAULT '',
        energy_j REAL,
        energy_seconds REAL,
        energy_source TEXT NOT NULL DEFAULT '',
        energy_is_estimate INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX measurements_kind ON measurements(kind, started_at);
    """,
    # 3 -> 4: measurements gain the kind 'answers' (one prompt answered by several models, side by side). SQLite
    # cannot change a CHECK in place: the table is rebuilt and its rows copied, all inside the migration's
    # transaction (nothing references measurements, so dropping the old table breaks no foreign key).
    """
    CREATE TABLE measurements_v4 (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('batched', 'load', 'quality', 'answers')),
        machine_ref INTEGER NOT NULL REFERENCES machines(id),
        model_ref INTEGER REFERENCES models(id),
        target TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'failed', 'cancelled')),
        error TEXT NOT NULL DEFAULT '',
        started_at TEXT NOT NULL DEFAULT '',
        ended_at TEXT NOT NULL DEFAULT '',
        settings TEXT NOT NULL DEFAULT '{}',
        data TEXT NOT NULL DEFAULT '{}',
        answer TEXT NOT NULL DEFAULT '',
        energy_j REAL,
        energy_seconds REAL,
        energy_source TEXT NOT NULL DEFAULT '',
        energy_is_estimate INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO measurements_v4 (id, uid, kind, machine_ref, model_ref, target, status, error, started_at, ended_at,
                                 settings, data, answer, energy_j, energy_seconds, energy_source, energy_is_estimate)
        SELECT id, uid, kind, machine_ref, model_ref, target, status, error, started_at, ended_at, settings, data,
               answer, energy_j, energy_seconds, energy_source, energy_is_estimate FROM measurements;
    DROP TABLE measurements;
    ALTER TABLE measurements_v4 RENAME TO measurements;
    CREATE INDEX measurements_kind ON measurements(kind, started_at);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def _read_header(path: Path) -> bytes:
    """The first 100 bytes; anything but a regular file is refused first (a FIFO would block the open for ever)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(
                info.st_mode) else "a device or socket"
            raise StoreError(f"{path} is {kind}, not a results database file; it was left untouched. "
                             "Move it away or choose another file (TOKENOMETER_HOME).")
        # O_NONBLOCK: should the path become a FIFO between the stat and the open, the open still returns.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StoreError(f"{path} is not a regular file; it was left untouched.")
            return os.read(fd, 100)
        finally:
            os.close(fd)
    except OSError as error:
        raise StoreError(f"The results database {path} cannot be read: {error.strerror or error}.") from error


def connect_read_only(path: Path, *, timeout: float) -> sqlite3.Connection:
    """A connection that never writes the database. A WAL store on read-only media has no -shm file and none
    can be made, so mode=ro cannot open it; then immutable=1 reads it as the file stands (nobody can write
    there, so nothing can change under us)."""
    uri = path.resolve().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError as error:
        db.close()  # closed now, not when collected: an open handle keeps read-only media busy
        if "locked" in str(error) or "busy" in str(error) or os.access(path.parent, os.W_OK):
            raise
        log.info("Reading %s as immutable (read-only media): %s", path, error)
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=timeout, isolation_level=None,
                           check_same_thread=False)


def _statements(script: str) -> list[str]:
    """A migration script as single statements, so that all of them run inside the caller's transaction
    (executescript would commit first)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL at the end of a migration: {buffer.strip()[:60]!r}")
    return statements


def user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _backup(path: Path, version: int, *, timeout: float) -> None:
    """Copy the store with SQLite's backup API through a second connection: the caller holds the write lock,
    and a reader still sees the committed state, which is exactly what is about to be migrated."""
    backup = path.with_name(f"{path.name}.v{version}.bak")
    log.info("Backing up the results store to %s before migrating from schema %d", backup, version)
    source = sqlite3.connect(path, timeout=timeout)
    target = sqlite3.connect(backup)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def migrate(db: sqlite3.Connection, path: Path | None, *, timeout: float = 5.0) -> None:
    """Bring a store to SCHEMA_VERSION. The version is read again inside one write transaction (BEGIN
    IMMEDIATE) that also holds every step, so of several processes opening a new store at once exactly one
    migrates and the others find it done; a store that had a schema is backed up first."""
    if user_version(db) == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        version = user_version(db)
        if version > SCHEMA_VERSION:
            raise StoreError(f"The results database {path} was written by a newer Tokenometer (schema {version}, "
                             f"this version reads up to {SCHEMA_VERSION}); update Tokenometer to open it.")
        if 0 < version < SCHEMA_VERSION and path is not None:
            _backup(path, version, timeout=timeout)
        for step in range(version, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[step]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {step + 1}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if version < SCHEMA_VERSION:
        log.info("Results store migrated from schema %d to %d", version, SCHEMA_VERSION)


def open_connection(path: Path | None, *, read_only: bool, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection to the store at `path`, migrated (or, read-only, checked to need no migration), in WAL with
    FULL sync; `path` None is an empty store in memory (a missing store opened only to read)."""
    where = path if path is not None else Path(":memory:")
    try:
        if read_only and path is not None:
            db = connect_read_only(path, timeout=busy_timeout_s)
        else:
            # isolation_level=None: transactions are explicit, so a commit is exactly where we say.
            db = sqlite3.connect(where if path is not None else ":memory:", timeout=busy_timeout_s,
                                 isolation_level=None, check_same_thread=False)
    except sqlite3.Error as error:
        raise store_error("open the store", where, error) from error
    try:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if read_only and path is not None:
            version = user_version(db)
            if version == 0:  # an empty file: nothing to read
                db.close()
                return open_connection(None, read_only=True, busy_timeout_s=busy_timeout_s)
            if version != SCHEMA_VERSION:
                raise StoreError(f"The results database {path} has schema {version} and is on a read-only "
                                 f"location, so it cannot be upgraded to schema {SCHEMA_VERSION}. Copy it to a "
                                 "writable folder to open it.")
        else:
            migrate(db, path, timeout=busy_timeout_s)
            if path is not None:
                # WAL survives a crash of the app; FULL makes every commit survive a power loss too.
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as error:
        db.close()
        raise store_error("open the store", where, error) from error
    except BaseException:
        db.close()
        raise
    return db


def check_store_file(path: Path) -> None:
    """Refuse a file that is not one of our stores without writing a byte to it."""
    header = _read_header(path)
    if not header:
        return  # an empty file is a new store
    if not header.startswith(SQLITE_MAGIC):
        raise StoreError(f"{path} is not a Tokenometer results database (it is not an SQLite file); "
                         "it was left untouched. Move it away or choose another file.")
    # A read-only connection to a WAL database creates -wal and -shm files it cannot remove on close.
    side_files = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    existing = {p for p in side_files if p.exists()}
    try:
        probe = connect_read_only(path, timeout=1.0)
    except sqlite3.OperationalError:
        return  # locked by a writer (a store being created): the normal open waits for it and reports it
    except sqlite3.Error as error:
        raise StoreError(f"The results database {path} cannot be opened: {error}.") from error
    try:
        problem = _problem(probe, path)
    finally:
        probe.close()
    if problem is None:
        # Accepted: side files stay. Another process may have just switched the store to WAL, and removing
        # a -shm it has mapped would split the processes onto two indexes and lose commits.
        return
    wal = side_files[0]
    if wal not in existing and wal.exists() and wal.stat().st_size == 0:
        for created in side_files:  # refused: leave the file as it was found
            if created not in existing:
                created.unlink(missing_ok=True)
    raise StoreError(problem)


def _problem(probe: sqlite3.Connection, path: Path) -> str | None:
    """Why the file is not a store this version can use, or None."""
    try:
        app_id = probe.execute("PRAGMA application_id").fetchone()[0]
        version = probe.execute("PRAGMA user_version").fetchone()[0]
        tables = probe.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        check = probe.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.OperationalError:
        return None  # locked, or not openable here (read-only media): the normal open reports it clearly
    except sqlite3.DatabaseError as error:
        return (f"The results database {path} is damaged ({error}); it was left untouched. "
                "Restore a backup or move it away to start a new one.")
    if app_id != APPLICATION_ID and tables:
        return (f"{path} is an SQLite database of another program, not a Tokenometer results store; "
                "it was left untouched.")
    if check != "ok":
        return (f"The results database {path} is damaged ({check}); it was left untouched. "
                "Restore a backup or move it away to start a new one.")
    if version > SCHEMA_VERSION:
        return (f"The results database {path} was written by a newer Tokenometer (schema {version}, "
                f"this version reads up to {SCHEMA_VERSION}); update Tokenometer to open it.")
    return None


def store_error(action: str, path: Path, error: sqlite3.Error) -> StoreError:
    text = str(error)
    if "locked" in text or "busy" in text:
        return StoreError(f"Could not {action}: the results database {path} is locked by another program "
                          "(is a second Tokenometer running?). Close it and try again.")
    if "full" in text:
        return StoreError(f"Could not {action}: the disk holding the results database {path} is full. "
                          "Free some space and try again.")
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return StoreError(f"Could not {action}: the results database {path} is on a read-only location or "
                          "cannot be written. Choose a writable folder (TOKENOMETER_HOME).")
    return StoreError(f"Could not {action} in the results database {path}: {text}.")
