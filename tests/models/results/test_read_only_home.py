"""A home that does not exist on a read-only file system, and a store on read-only media: commands that need
no store run, a store is listed, compared and exported as it is, and a benchmark keeps its rows elsewhere.

Made real: the file system is a tmpfs remounted read-only (`mount -o remount,ro`), so the kernel refuses every
write with EROFS even to root, which a chmod 0555 folder would not. Mounting needs root, as CI and this
machine have; as another user the test fails, saying why, rather than pretending."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .sample_runs import fill_store

REPO_ROOT = Path(__file__).resolve().parents[3]


@contextlib.contextmanager
def _read_only_media(folder: Path, *, content: Path | None = None) -> Iterator[Path]:
    """`folder` as a read-only tmpfs holding a copy of `content` (a folder), made read-only after the copy."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tokenometer-ro", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"a read-only file system cannot be mounted for this test (needs root): {done.stderr}")
    try:
        if content is not None:
            shutil.copytree(content, folder, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _cli(*args: str, home: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOKENOMETER_HOME": str(home), "HF_HOME": str(home / "hf"),
           "HF_HUB_CACHE": str(home / "hf" / "hub"), "TMPDIR": str(tmp)}
    return subprocess.run([sys.executable, "-m", "models.cli", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_commands_run_with_a_missing_home_on_a_read_only_file_system(tmp_path: Path, starter_model: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    with _read_only_media(tmp_path / "ro") as media:
        home = media / "missing" / "home"  # cannot be created: the file system is read-only
        for args in (["runs"], ["models"], ["hardware"], ["fit", str(starter_model)]):
            done = _cli(*args, home=home, tmp=temp)
            assert done.returncode == 0 and "Traceback" not in done.stderr, (args, done.stderr)
        assert "No runs stored yet" in _cli("runs", home=home, tmp=temp).stdout
        assert "Read-only" not in _cli("models", home=home, tmp=temp).stderr
        bench = _cli("bench", str(starter_model), "-p", "16", "-n", "4", "-r", "1", "-t", "1", home=home, tmp=temp)
        assert "Traceback" not in bench.stderr
        assert "pp16" in bench.stdout and "tg4" in bench.stdout  # measured and printed
        assert bench.returncode == 1 and "Cannot create the results database" in bench.stderr
        kept = list((temp / "tokenometer-recovered").glob("bench-*.jsonl"))
        assert len(kept) == 1 and str(kept[0]) in bench.stderr and len(kept[0].read_text().splitlines()) == 2
        assert not home.exists()


def test_a_store_on_read_only_media_is_listed_compared_and_exported(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    fill_store(source / "results.sqlite3")  # closed cleanly: no -wal or -shm beside it, as on a copied disk
    assert sorted(p.name for p in source.iterdir()) == ["results.sqlite3"]
    digest = hashlib.sha256((source / "results.sqlite3").read_bytes()).hexdigest()
    temp = tmp_path / "tmp"
    temp.mkdir()
    with _read_only_media(tmp_path / "ro", content=source) as home:
        runs = _cli("runs", "--limit", "3", home=home, tmp=temp)
        assert runs.returncode == 0, runs.stderr
        assert len(runs.stdout.splitlines()) == 4
        compare = _cli("compare", "1-4", home=home, tmp=temp)
        assert compare.returncode == 0 and compare.stdout.startswith("| model"), compare.stderr
        report = _cli("report", "all", "-o", str(tmp_path / "out.csv"), home=home, tmp=temp)
        assert report.returncode == 0 and "Wrote 32 runs" in report.stdout, report.stderr
        imported = _cli("import", str(tmp_path / "out.csv"), home=home, tmp=temp)
        assert imported.returncode == 1 and "read-only" in imported.stderr and "Traceback" not in imported.stderr
        assert hashlib.sha256((home / "results.sqlite3").read_bytes()).hexdigest() == digest
        assert sorted(p.name for p in home.iterdir()) == ["results.sqlite3"]
