"""Fixtures for the benchmark engine's tests: small real jobs on the starter model, and broken model files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from models.bench.spec import BenchJob, BenchParams, BenchTest


@pytest.fixture
def make_job(starter_model: Path) -> Callable[..., BenchJob]:
    """A small job (pp16, tg4, 2 repetitions, 1 thread) on the starter model unless told otherwise."""

    def make(model: Path | None = None, *, tests: tuple[BenchTest, ...] | None = None, repetitions: int = 2,
             **params: Any) -> BenchJob:
        options: dict[str, Any] = {"n_threads": 1, "n_batch": 64, "n_ubatch": 32, **params}
        return BenchJob(model_path=model or starter_model, params=BenchParams(**options),
                        tests=tests or (BenchTest(16, 0), BenchTest(0, 4)), repetitions=repetitions)

    return make


@pytest.fixture
def truncated_model(starter_model: Path, tmp_path: Path) -> Path:
    """The first MiB of the real starter model: a valid header whose tensor data is cut off."""
    path = tmp_path / "truncated.gguf"
    with starter_model.open("rb") as source:
        path.write_bytes(source.read(1 << 20))
    return path


@pytest.fixture
def unknown_arch_model(tmp_path: Path) -> Path:
    """A well-formed GGUF for an architecture llama.cpp does not know, written with the gguf package."""
    import gguf
    import numpy as np

    path = tmp_path / "unknown-arch.gguf"
    writer = gguf.GGUFWriter(str(path), arch="tokenometer-test-arch")
    writer.add_block_count(1)
    writer.add_context_length(128)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
