"""Inputs that would eat the machine's memory are refused with numbers, and the worker runs under a memory cap."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from models.bench.events import BenchEvent
from models.bench.memguard import HostNeed, available_memory, check_fits
from models.bench.runner import BenchRunner
from models.bench.spec import BenchJob, BenchTest
from models.errors import BenchmarkError

ROOT = Path(__file__).resolve().parents[3]
KV_BYTES_PER_TOKEN = 30 * 2 * 3 * 64 * 2  # the starter model: 30 layers, K and V, 3 KV heads of 64, f16


@pytest.fixture
def huge_context_model(starter_model: Path, tmp_path: Path) -> Path:
    """The real starter model, its header claiming a context of 2^32 - 1 tokens (as the fault campaign's file did)."""
    import gguf

    path = tmp_path / "huge-context.gguf"
    shutil.copyfile(starter_model, path)
    reader = gguf.GGUFReader(str(path), "r+")
    field = reader.fields["llama.context_length"]
    field.parts[field.data[0]][0] = 2**32 - 1  # written through the memory map
    del reader
    return path


def test_check_fits_gives_the_numbers() -> None:
    check_fits(HostNeed(kv=1 << 30), "pp512", available=2 << 30)
    with pytest.raises(BenchmarkError) as caught:
        check_fits(HostNeed(kv=22 << 30, compute=1 << 29), "pp1000000", available=20 << 30)
    message = str(caught.value)
    # Sizes as everywhere else (models.units: binary units, as llama.cpp logs them).
    assert "pp1000000 needs about 22.5 GiB" in message and "KV cache 22.0 GiB" in message
    assert "compute 512.0 MiB" in message and "only 20.0 GiB is free" in message


def test_huge_prompt_on_a_huge_context_model_is_refused_before_allocating(huge_context_model: Path) -> None:
    # Enough tokens that the KV cache alone is twice the free memory, whatever this machine has.
    n_prompt = min(max(1_000_000, 2 * available_memory() // KV_BYTES_PER_TOKEN), (1 << 24) - 256)
    done = subprocess.run([sys.executable, "-m", "models.cli", "bench", str(huge_context_model), "-p", str(n_prompt),
                           "-n", "0", "-r", "1", "-t", "1", "-o", "json", "--no-save"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    import json

    row, = json.loads(done.stdout)
    assert row["status"] == "failed"
    assert f"pp{n_prompt} (context of {n_prompt} tokens) needs about" in row["error"]
    assert "GiB is free; refused before llama.cpp allocates it" in row["error"]
    assert row["mem_peak"] == 0  # a refused test carries no measurement


def test_worker_runs_under_a_data_limit(make_job: Callable[..., BenchJob]) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("RLIMIT_DATA is set on Linux")
    limits: list[str] = []
    pid: dict[str, int] = {}

    def listen(_job: BenchJob, event: BenchEvent) -> None:
        if event.kind == "started":
            pid["worker"] = event.data["pid"]
        elif event.kind == "sample" and not limits:
            limits.extend(line for line in Path(f"/proc/{pid['worker']}/limits").read_text().splitlines()
                          if line.startswith("Max data size"))

    results = BenchRunner(on_event=listen).run([make_job(tests=(BenchTest(8, 0),), repetitions=1)])
    assert results[0].status == "ok", results[0].error
    soft = limits[0].split()[3]
    assert soft.isdigit() and int(soft) <= available_memory() + (4 << 30)  # capped near what the machine has
