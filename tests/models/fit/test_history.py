"""The memory estimate's error per architecture, from runs kept in a real results store."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.bench.spec import BenchResult
from models.fit.history import architecture_of, memory_estimate_errors
from models.results.store import ResultsStore


def _run(store: ResultsStore, model_type: str, estimate: int, measured: tuple[int, int, int, int], *,
         machine: str = "m", status: str = "ok", name: str = "a.gguf") -> None:
    model, kv, compute, output = measured
    result = BenchResult(model_type=model_type, model_filename=name, n_gen=16, avg_ts=1.0, status=status,
                         buf_model=model, buf_kv=kv, buf_compute=compute, buf_output=output,
                         fit_estimate={"total": estimate} if estimate else {})
    store.record_result(result, machine={"machine_id": machine})


def test_errors_per_architecture(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.sqlite3") as store:
        _run(store, "llama 1B Q4_K - Medium", 110, (60, 20, 15, 5))  # +10%
        _run(store, "llama 8B Q8_0", 90, (60, 20, 15, 5), name="b.gguf")  # -10%
        _run(store, "qwen2 7B Q4_0", 105, (80, 10, 10, 0))  # +5%
        _run(store, "qwen2 7B Q4_0", 200, (80, 10, 10, 0), machine="other")  # another machine
        _run(store, "qwen2 7B Q4_0", 0, (80, 10, 10, 0))  # no estimate: not counted
        _run(store, "qwen2 7B Q4_0", 150, (0, 0, 0, 0))  # no measured buffers: not counted
        _run(store, "qwen2 7B Q4_0", 150, (80, 10, 10, 0), status="failed")
        records = store.list_runs()
    errors = {e.architecture: e for e in memory_estimate_errors(records, machine_id="m")}
    assert set(errors) == {"llama", "qwen2"}
    assert errors["llama"].n_runs == 2 and errors["llama"].models == 2
    assert errors["llama"].mean == pytest.approx(0.0) and abs(errors["llama"].worst) == pytest.approx(0.10)
    assert errors["qwen2"].n_runs == 1 and errors["qwen2"].mean == pytest.approx(0.05)
    everywhere = {e.architecture: e for e in memory_estimate_errors(records)}
    assert everywhere["qwen2"].n_runs == 2 and everywhere["qwen2"].worst == pytest.approx(1.0)


def test_architecture_from_llama_cpp_s_description() -> None:
    assert architecture_of("qwen2 7B Q4_K - Medium") == "qwen2"
    assert architecture_of("") == "unknown"
