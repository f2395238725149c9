"""A load time says whether the model file came from the disk (cold) or the page cache (warm)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from models.bench.pagecache import cached_fraction, page_cache_label
from models.bench.runner import BenchRunner
from models.bench.spec import BenchJob, BenchTest


def _evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="evicting a file from the cache needs fadvise")
def test_cold_then_warm(starter_model: Path, tmp_path: Path, make_job: Callable[..., BenchJob]) -> None:
    path = tmp_path / "copy.gguf"
    shutil.copyfile(starter_model, path)
    _evict(path)
    assert cached_fraction(path) == pytest.approx(0.0, abs=0.05)
    job = make_job(path, tests=(BenchTest(8, 0),), repetitions=1)
    cold, = BenchRunner().run([job])
    warm, = BenchRunner().run([job])  # the first load read it in
    assert cold.status == warm.status == "ok", (cold.error, warm.error)
    assert cold.load_page_cache == "cold" and cold.load_cached_fraction <= 0.1
    assert warm.load_page_cache == "warm" and warm.load_cached_fraction >= 0.9
    assert cached_fraction(path) == pytest.approx(1.0, abs=0.05)


def test_labels() -> None:
    assert [page_cache_label(x) for x in (None, 0.0, 0.5, 0.95)] == ["", "cold", "partial", "warm"]
