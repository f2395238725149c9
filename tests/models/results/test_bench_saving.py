"""tokenometer bench against a store that cannot take its rows: a real second connection holding the write
lock, and a real full disk (a small tmpfs). Rows are printed first, kept in a recovery file, and read back."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.cli import main
from models.paths import results_db_path
from models.results.store import ResultsStore

REPO_ROOT = Path(__file__).resolve().parents[3]
BENCH = ("bench", "-p", "16", "-n", "4", "-r", "1", "-t", "1")


def _bench(starter_model: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "models.cli", *BENCH, str(starter_model)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **env})


@contextlib.contextmanager
def _write_locked(db: Path) -> Iterator[sqlite3.Connection]:
    """Another program's connection holding the store's write lock (BEGIN EXCLUSIVE) until released."""
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield other
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()


def _recovery_path(stderr: str) -> Path:
    line = next(line for line in stderr.splitlines() if "They are kept in " in line)
    return Path(line.split("They are kept in ", 1)[1].split("; once", 1)[0])


def test_rows_are_printed_kept_in_a_recovery_file_and_imported_back_when_the_store_stays_locked(
        starter_model: Path, isolated_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ResultsStore(results_db_path()).close()
    with _write_locked(results_db_path()):
        proc = _bench(starter_model)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err  # not 0: the results are not where `runs` looks
    assert "pp16" in out and "tg4" in out and "±" in out  # printed although the save failed
    assert "locked by another program" in err and "2 results could not be saved" in err
    kept = _recovery_path(err)
    assert kept.parent == isolated_home / "recovered" and len(kept.read_text().splitlines()) == 2
    assert not list(kept.parent.glob("*.tmp"))  # written atomically
    with ResultsStore(results_db_path()) as store:
        assert store.list_runs() == []
    assert main(["import", str(kept)]) == 0
    assert "Imported 2 runs" in capsys.readouterr().out
    with ResultsStore(results_db_path()) as store:
        runs = store.list_runs()
    assert sorted(r.result.test for r in runs) == ["pp16", "tg4"]
    assert all(r.result.avg_ts > 0 and r.result.samples_ns and r.machine.get("cpu") for r in runs)


def test_a_lock_released_within_the_busy_timeout_only_delays_the_save(starter_model: Path,
                                                                    isolated_home: Path) -> None:
    ResultsStore(results_db_path()).close()
    with _write_locked(results_db_path()) as other:
        proc = _bench(starter_model)
        assert proc.stdout is not None
        for line in proc.stdout:
            if "pp16" in line:  # the first row is on screen while its save waits for the lock
                break
        time.sleep(0.5)
        other.execute("ROLLBACK")
        rest, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "tg4" in rest and "could not be saved" not in err
    with ResultsStore(results_db_path()) as store:
        assert sorted(r.result.test for r in store.list_runs()) == ["pp16", "tg4"]
    assert not (isolated_home / "recovered").exists()


@contextlib.contextmanager
def _tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real small file system (root only; CI runs as root) that can be filled to the last byte."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tokenometer-full", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"a tmpfs cannot be mounted for this test (needs root): {done.stderr}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_full_disk_keeps_the_rows_in_the_temp_folder(starter_model: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with _tmpfs(tmp_path / "home", "2m") as home:
        monkeypatch.setenv("TOKENOMETER_HOME", str(home))
        ResultsStore(results_db_path()).close()
        with (home / "filler").open("wb", buffering=0) as filler:  # fill the disk (unbuffered: nothing left to flush on close)
            with contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
        temp = tmp_path / "tmp"
        temp.mkdir()
        proc = _bench(starter_model, TMPDIR=str(temp))
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err
        assert "pp16" in out and "tg4" in out
        assert "full" in err or "disk I/O" in err, err
        kept = _recovery_path(err)
        assert kept.parent == temp / "tokenometer-recovered"  # the full disk could not hold it
        assert len(kept.read_text().splitlines()) == 2
        assert "Traceback" not in err
