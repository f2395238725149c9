"""Several real processes opening one new store at the same moment: one migrates, none fails, no row is lost."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from models.results.store import MIGRATIONS, SCHEMA_VERSION, ResultsStore

REPO_ROOT = Path(__file__).resolve().parents[3]
PROCESSES = 8

# Each process waits for the same instant, then opens the store and saves one run.
_OPENER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from tests.models.results.conftest import MACHINE_A, make_result
    from models.results.store import ResultsStore
    start = {start!r}
    while time.time() < start:
        time.sleep(0.0005)
    try:
        with ResultsStore({db!r}) as store:
            store.record_result(make_result(n_prompt=int(sys.argv[1]) + 1), machine=MACHINE_A)
    except Exception as error:
        print(type(error).__name__, error)
        sys.exit(1)
""")


def _open_at_once(db: Path) -> list[subprocess.CompletedProcess[str]]:
    script = _OPENER.format(root=str(REPO_ROOT), start=time.time() + 2.5, db=str(db))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for n in range(PROCESSES)]
    done = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, ""))
    return done


def test_processes_opening_a_new_store_at_once_all_save_their_run(tmp_path: Path) -> None:
    for attempt in range(3):  # three fresh stores: the race was lost often, but not every time
        db = tmp_path / f"results-{attempt}.sqlite3"
        done = _open_at_once(db)
        assert [p.returncode for p in done] == [0] * PROCESSES, [p.stdout for p in done if p.returncode]
        with ResultsStore(db) as store:
            assert store.schema_version == SCHEMA_VERSION
            assert sorted(r.result.n_prompt for r in store.list_runs()) == list(range(1, PROCESSES + 1))
        assert not list(tmp_path.glob("*.bak"))  # a new store has nothing to back up


def test_processes_opening_an_older_store_at_once_migrate_it_once_after_one_backup(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite3"
    old = sqlite3.connect(db)
    old.executescript(MIGRATIONS[0] + "\nPRAGMA user_version = 1;")
    old.execute("INSERT INTO machines VALUES (1, 'k1', 'a', 'Old box', '{}', '2025-01-01')")
    old.execute("INSERT INTO models (id, identity_key, file) VALUES (1, 'x', 'old.gguf')")
    old.execute("INSERT INTO runs (uid, machine_ref, model_ref, test, status, result) VALUES ('u1', 1, 1, 'tg16', 'ok', ?)",
                (json.dumps({"test": "tg16", "n_gen": 16}),))
    old.commit()
    old.close()
    done = _open_at_once(db)
    assert [p.returncode for p in done] == [0] * PROCESSES, [p.stdout for p in done if p.returncode]
    with ResultsStore(db) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert len(store.list_runs()) == PROCESSES + 1
    backup = sqlite3.connect(tmp_path / "results.sqlite3.v1.bak")
    assert backup.execute("PRAGMA user_version").fetchone()[0] == 1
    assert backup.execute("SELECT uid FROM runs").fetchall() == [("u1",)]  # taken before the migration
    backup.close()
