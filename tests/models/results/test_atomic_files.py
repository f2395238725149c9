"""models.files: one atomic write (temp file, fsync, rename, fsync of the folder) used by the settings, the
reports and the library list; a full disk leaves the old file whole and no temporary file behind."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.files import atomic_write_bytes, atomic_write_text
from models.hub.library import add_folder, folders
from models.results.reports import export_report
from models.results.store import ResultsStore
from models.settings import Settings, load_settings, save_settings

from .conftest import MACHINE_A, make_result


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """What os.fsync was called on (the real fsync still runs: this only watches)."""
    seen: list[Path] = []
    real = os.fsync

    def watch(fd: int) -> None:
        seen.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", watch)
    return seen


def test_a_write_replaces_the_file_exactly_and_syncs_file_and_folder(tmp_path: Path, fsynced: list[Path]) -> None:
    target = tmp_path / "sub" / "data.txt"
    atomic_write_text(target, "first\r\nline\n")
    assert target.read_bytes() == b"first\r\nline\n"  # written as given, no newline translation
    atomic_write_bytes(target, b"\x00second")
    assert target.read_bytes() == b"\x00second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.txt"]
    assert target.parent in fsynced  # the rename itself is durable
    assert any(p.name.startswith(".data.txt.") for p in fsynced)  # the data before the rename


def test_a_full_disk_leaves_the_old_file_whole_and_no_temporary_file(tmp_path: Path) -> None:
    folder = tmp_path / "small"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tokenometer-small", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"a small tmpfs cannot be mounted for this test (needs root): {done.stderr}")
    try:
        target = folder / "settings.json"
        target.write_text("old and complete")
        with pytest.raises(OSError) as caught:
            atomic_write_bytes(target, b"x" * (2 << 20))  # twice the disk
        assert caught.value.errno == errno.ENOSPC
        assert target.read_text() == "old and complete"
        assert sorted(p.name for p in folder.iterdir()) == ["settings.json"]
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@contextlib.contextmanager
def _watching(fsynced: list[Path]) -> Iterator[list[Path]]:
    start = len(fsynced)
    new: list[Path] = []
    yield new
    new.extend(fsynced[start:])


def test_settings_reports_and_the_library_list_all_write_through_it(tmp_path: Path, isolated_home: Path,
                                                                      fsynced: list[Path]) -> None:
    with _watching(fsynced) as synced:
        save_settings(Settings(currency="USD"))
    assert load_settings().currency == "USD" and isolated_home in synced
    with ResultsStore(tmp_path / "r.sqlite3") as store:
        runs = store.get_runs([store.record_result(make_result(), machine=MACHINE_A)])
    out = tmp_path / "reports"
    out.mkdir()
    with _watching(fsynced) as synced:
        export_report(runs, out / "r.md")
    assert out in synced and (out / "r.md").read_text().startswith("# Tokenometer report")
    models = tmp_path / "models"
    models.mkdir()
    with _watching(fsynced) as synced:
        add_folder(models)
    assert models.resolve() in folders() and isolated_home in synced
    assert not [p for p in isolated_home.iterdir() if p.name.endswith(".tmp")]
