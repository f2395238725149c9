"""The results store: round trips, durability, migrations, and refusing what is not ours."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.errors import StoreError
from models.results.store import MIGRATIONS, SCHEMA_VERSION, EnergyFigures, ResultsStore, RunFilter

from .conftest import MACHINE_A, MACHINE_B, make_result

REPO_ROOT = Path(__file__).resolve().parents[3]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_run_round_trips_with_machine_model_settings_samples_memory_fit_and_energy(store: ResultsStore) -> None:
    result = make_result(n_prompt=0, n_gen=128, ts=(50.0, 52.0, 49.0), sha256="b1" * 32)
    energy = EnergyFigures(joules=12.5, seconds=7.6, source="rapl", is_estimate=False)
    run_id = store.record_result(result, machine=MACHINE_A, model_identity={"repo": "HuggingFaceTB/SmolLM2"},
                                 energy=energy)
    (record,) = store.get_runs([run_id])
    assert record.result == result
    assert record.result.samples_ts == [50.0, 52.0, 49.0] and len(record.result.samples_ns) == 3
    assert record.result.fit_estimate["total"] == 170 * 2**20
    assert record.machine == MACHINE_A and record.machine_label == "AMD Ryzen 7 7840U"
    assert record.model == {"repo": "HuggingFaceTB/SmolLM2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
                            "sha256": "b1" * 32, "quant": "Q4_1", "n_params": 134_515_008, "size": 98_362_432,
                            "model_type": "llama 135M Q4_1"}
    assert record.settings["n_threads"] == 4 and record.settings["flash_attn"] == "auto"
    assert record.energy == energy
    assert record.energy.joules_per_token(record.result) == pytest.approx(12.5 / (128 * 3))
    assert record.started_at == result.test_time and record.ended_at > "2026"
    assert record.imported_from == ""


def test_failed_and_cancelled_runs_are_kept_as_such(store: ResultsStore) -> None:
    failed = store.record_result(make_result(status="failed"), machine=MACHINE_A)
    cancelled = store.record_result(make_result(status="cancelled"), machine=MACHINE_A)
    store.record_result(make_result(), machine=MACHINE_A)
    assert [r.id for r in store.list_runs(filters=RunFilter(status="failed"))] == [failed]
    (rec,) = store.get_runs([cancelled])
    assert rec.status == "cancelled" and rec.result.error == "the worker was stopped" and rec.result.samples_ns == []


def test_the_store_is_wal_with_full_sync_and_a_schema_version(store: ResultsStore) -> None:
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.schema_version == SCHEMA_VERSION


def test_a_reported_run_survives_the_app_being_killed_right_after(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite3"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from tests.models.results.conftest import MACHINE_A, make_result
        from models.results.store import ResultsStore
        store = ResultsStore({str(db)!r})
        store.record_result(make_result(n_gen=64, n_prompt=0), machine=MACHINE_A)
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint: as if the app were killed
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    with ResultsStore(db) as reopened:
        (rec,) = reopened.list_runs()
        assert rec.result.test == "tg64"


def test_filters_and_delete(store: ResultsStore) -> None:
    a = store.record_result(make_result(model="Qwen3-0.6B-Q8_0.gguf", test_time="2026-01-01T00:00:00+00:00"),
                            machine=MACHINE_A)
    b = store.record_result(make_result(n_prompt=0, n_gen=128, test_time="2026-02-01T00:00:00+00:00"),
                            machine=MACHINE_B)
    c = store.record_result(make_result(test_time="2026-03-01T00:00:00+00:00"), machine=MACHINE_A)
    assert [r.id for r in store.list_runs()] == [c, b, a]  # newest first
    assert [r.id for r in store.list_runs(filters=RunFilter(model="qwen3"))] == [a]
    assert [r.id for r in store.list_runs(filters=RunFilter(test="tg128"))] == [b]
    machine_b = store.get_runs([b])[0].machine_key
    assert [r.id for r in store.list_runs(filters=RunFilter(machine_key=machine_b))] == [b]
    assert [r.id for r in store.list_runs(filters=RunFilter(since="2026-02-01", imported=False))] == [c, b]
    assert [r.id for r in store.list_runs(limit=1, offset=1)] == [b]
    assert store.get_runs([c, a]) == [store.get_runs([c])[0], store.get_runs([a])[0]]
    with pytest.raises(StoreError, match="No run with id 999"):
        store.get_runs([a, 999])
    assert store.delete_runs([a, b]) == 2
    assert [r.id for r in store.list_runs()] == [c]
    assert [m["label"] for m in store.machines()] == ["AMD Ryzen 7 7840U"]  # machine B went with its last run


def test_an_older_store_is_backed_up_then_migrated(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite3"
    old = sqlite3.connect(db)
    old.executescript(MIGRATIONS[0] + "\nPRAGMA user_version = 1;")
    result = make_result(n_prompt=0, n_gen=16)
    old.execute("INSERT INTO machines VALUES (1, 'k1', 'a', 'Old box', ?, '2025-01-01')", (json.dumps(MACHINE_A),))
    old.execute("INSERT INTO models (id, identity_key, file) VALUES (1, 'x', 'old.gguf')")
    old.execute("INSERT INTO runs (uid, machine_ref, model_ref, test, status, result) VALUES "
                "('u1', 1, 1, 'tg16', 'ok', ?)", (json.dumps(result.to_json()),))
    old.commit()
    old.close()
    with ResultsStore(db) as store:
        assert store.schema_version == SCHEMA_VERSION == 4
        (rec,) = store.list_runs()
        assert rec.result == result and rec.machine_label == "Old box" and rec.energy is None
        store.record_result(make_result(), machine=MACHINE_A,
                            energy=EnergyFigures(joules=1.0, seconds=1.0, source="rapl", is_estimate=False))
    backup = sqlite3.connect(tmp_path / "results.sqlite3.v1.bak")
    assert backup.execute("PRAGMA user_version").fetchone()[0] == 1
    assert backup.execute("SELECT uid FROM runs").fetchall() == [("u1",)]
    backup.close()


@pytest.mark.parametrize("kind", ["text", "foreign-sqlite", "corrupt", "newer"])
def test_a_foreign_corrupt_or_newer_file_is_refused_and_left_untouched(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "results.sqlite3"
    if kind == "text":
        db.write_text("name,score\nalice,3\n" * 10)
        expected = "not an SQLite file"
    elif kind == "foreign-sqlite":
        other = sqlite3.connect(db)
        other.execute("CREATE TABLE cookies (name TEXT)")
        other.commit()
        other.close()
        expected = "another program"
    else:
        with ResultsStore(db) as store:
            for n in range(60):  # enough rows to fill several pages
                store.record_result(make_result(test_time=f"2026-01-01T00:00:{n % 60:02d}"), machine=MACHINE_A)
        if kind == "corrupt":
            data = bytearray(db.read_bytes())
            page = int.from_bytes(data[16:18], "big")
            data[3 * page: 3 * page + 400] = b"\xff" * 400  # garble a table page's header and cells
            db.write_bytes(bytes(data))
            expected = "damaged"
        else:
            conn = sqlite3.connect(db)
            conn.execute("PRAGMA user_version = 99")
            conn.close()
            expected = "newer Tokenometer"
    before = _digest(db)
    with pytest.raises(StoreError, match=expected):
        ResultsStore(db)
    assert _digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.sqlite3"]  # no journal, WAL or backup left


def test_a_database_locked_by_a_second_instance_is_a_clear_message(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite3"
    with ResultsStore(db, busy_timeout_s=0.2) as store:
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the second instance holds the write lock
        with pytest.raises(StoreError, match="locked by another program"):
            store.record_result(make_result(), machine=MACHINE_A)
        other.execute("ROLLBACK")
        other.close()
        store.record_result(make_result(), machine=MACHINE_A)  # works again once released
        assert len(store.list_runs()) == 1


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """Make `folder` truly read-only: chmod for a normal user; root writes through mode bits, so as root
    the folder becomes a tmpfs remounted read-only (a real read-only disk)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    staged = folder.with_name(folder.name + ".staged")
    shutil.copytree(folder, staged)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tokenometer-test", str(folder)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"running as root, and a read-only tmpfs cannot be mounted for this test: {proc.stderr}")
    try:
        shutil.copytree(staged, folder, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("existing", [False, True])
def test_a_read_only_location_is_a_clear_message(tmp_path: Path, existing: bool) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "results.sqlite3"
    if existing:
        with ResultsStore(db) as store:
            store.record_result(make_result(), machine=MACHINE_A)
        before = _digest(db)
    with _read_only(folder):
        if existing:  # read-only media: listed as it is, and a write says why it cannot be done
            with ResultsStore(db) as store:
                assert store.read_only and len(store.list_runs()) == 1
                with pytest.raises(StoreError, match="read-only"):
                    store.record_result(make_result(), machine=MACHINE_A)
            assert _digest(db) == before
            assert sorted(p.name for p in folder.iterdir()) == ["results.sqlite3"]
        else:
            with pytest.raises(StoreError, match="read-only"):
                ResultsStore(db)
            with ResultsStore(db, create=False) as store:  # only reading: a missing store is an empty one
                assert store.list_runs() == []
            assert not db.exists()


def test_opening_a_store_another_instance_holds_exclusively_is_a_clear_message(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite3"
    with ResultsStore(db) as store:
        store.record_result(make_result(), machine=MACHINE_A)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("PRAGMA locking_mode = EXCLUSIVE")
    other.execute("BEGIN EXCLUSIVE")
    other.execute("DELETE FROM runs")  # a write the other instance has not committed
    with pytest.raises(StoreError, match="locked by another program"):
        ResultsStore(db, busy_timeout_s=0.2)
    other.execute("ROLLBACK")
    other.close()
    with ResultsStore(db) as store:
        assert len(store.list_runs()) == 1
