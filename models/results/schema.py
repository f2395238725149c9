"""The results store's schema: its migrations, and how a file is recognised as a store (or refused) before use."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from models.errors import StoreError

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
)
SCHEMA_VERSION = len(MIGRATIONS)


def check_store_file(path: Path) -> None:
    """Refuse a file that is not one of our stores without writing a byte to it."""
    try:
        with path.open("rb") as handle:
            header = handle.read(100)
    except OSError as error:
        raise StoreError(f"The results database {path} cannot be read: {error.strerror or error}.") from error
    if not header:
        return  # an empty file is a new store
    if not header.startswith(SQLITE_MAGIC):
        raise StoreError(f"{path} is not a Tokenometer results database (it is not an SQLite file); "
                         "it was left untouched. Move it away or choose another file.")
    # A read-only connection to a WAL database creates -wal and -shm files it cannot remove on close.
    side_files = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    existing = {p for p in side_files if p.exists()}
    try:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error as error:
        raise StoreError(f"The results database {path} cannot be opened: {error}.") from error
    try:
        app_id = probe.execute("PRAGMA application_id").fetchone()[0]
        version = probe.execute("PRAGMA user_version").fetchone()[0]
        tables = probe.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        check = probe.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.OperationalError:
        return  # locked, or not openable here (read-only media): the normal open reports it clearly
    except sqlite3.DatabaseError as error:
        raise StoreError(f"The results database {path} is damaged ({error}); it was left untouched. "
                         "Restore a backup or move it away to start a new one.") from error
    finally:
        probe.close()
        wal = side_files[0]
        if wal not in existing and wal.exists() and wal.stat().st_size == 0:
            for created in side_files:
                if created not in existing:
                    created.unlink(missing_ok=True)
    if app_id != APPLICATION_ID and tables:
        raise StoreError(f"{path} is an SQLite database of another program, not a Tokenometer results store; "
                         "it was left untouched.")
    if check != "ok":
        raise StoreError(f"The results database {path} is damaged ({check}); it was left untouched. "
                         "Restore a backup or move it away to start a new one.")
    if version > SCHEMA_VERSION:
        raise StoreError(f"The results database {path} was written by a newer Tokenometer (schema {version}, "
                         f"this version reads up to {SCHEMA_VERSION}); update Tokenometer to open it.")


def store_error(action: str, path: Path, error: sqlite3.Error) -> StoreError:
    text = str(error)
    if "locked" in text or "busy" in text:
        return StoreError(f"Could not {action}: the results database {path} is locked by another program "
                          "(is a second Tokenometer running?). Close it and try again.")
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return StoreError(f"Could not {action}: the results database {path} is on a read-only location or "
                          "cannot be written. Choose a writable folder (TOKENOMETER_HOME).")
    return StoreError(f"Could not {action} in the results database {path}: {text}.")
