"""`tokenometer batched` and `tokenometer load` end to end: the real worker and starter model, or a loopback server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.bench.capacity.batched_output import ALL_KEYS
from models.bench.capacity.sweep import LoadPlan, run_sweep
from models.bench.capacity.profile import RequestShape
from models.bench.capacity.serving import RequestRecord, Slo
from models.cli import main
from models.errors import BenchmarkError
from tests.models.bench.capacity.servers import faulty_server, free_port  # noqa: F401


def test_batched_prints_llama_batched_bench_rows(starter_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["batched", str(starter_model), "-npp", "16", "-ntg", "4", "-npl", "1,3", "-t", "1", "-b", "64",
                 "-ub", "32", "-o", "jsonl"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["pp"], r["tg"], r["pl"]) for r in rows] == [(16, 4, 1), (16, 4, 3)]
    assert all(list(r) == list(ALL_KEYS) for r in rows)
    wide = rows[1]
    assert wide["n_kv"] == 3 * 20 and wide["n_kv_max"] >= 60
    assert wide["speed_tg"] == pytest.approx(3 * 4 / wide["t_tg"], rel=1e-4)


def test_batched_skips_what_the_context_cannot_hold(starter_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["batched", str(starter_model), "-npp", "16,600", "-ntg", "4", "-npl", "2", "-c", "512", "-t", "1",
                 "-o", "md"])
    captured = capsys.readouterr()
    assert code == 0
    assert "|    16 |      4 |    2 |" in captured.out and "|   600 |" not in captured.out
    assert "skipped pp600+tg4 x2" in captured.err


@pytest.mark.parametrize(("flags", "message"), [
    (["-npl", "0"], "parallel sequences"),
    (["-npp", "16", "-ntg", "4", "-npl", "4", "-c", "8"], "No test fits a context of 8"),
])
def test_batched_refuses_impossible_plans(starter_model: Path, capsys: pytest.CaptureFixture[str],
                                          flags: list[str], message: str) -> None:
    assert main(["batched", str(starter_model), *flags]) == 1
    assert message in capsys.readouterr().err


def test_load_in_llama_cpp_finds_the_capacity(starter_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Generous limits: this checks the sweep and its answer, not this machine's speed.
    code = main(["load", str(starter_model), "--profile", "tiny", "--concurrency", "1,2", "--requests", "3",
                 "-t", "1", "--slo-ttft", "120s", "--slo-tpot", "30s", "-o", "json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    levels = report["levels"]
    assert [level["concurrency"] for level in levels] == [1, 2]
    assert all(level["completed"] == 3 and level["failed"] == 0 and level["slo_met"] for level in levels)
    assert all(level["output_throughput"] > 0 and level["p90_ttft_ms"] > 0 for level in levels)
    assert "serves 2 people at once" in report["answer"]


def test_load_against_an_endpoint_and_its_faults(faulty_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["load", "--endpoint", f"{faulty_server}/ok", "--concurrency", "1,4", "--requests", "4",
                 "--profile", "tiny", "-o", "jsonl"])
    assert code == 0
    levels = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(level["concurrency"], level["completed"]) for level in levels] == [(1, 4), (4, 4)]
    code = main(["load", "--endpoint", f"http://127.0.0.1:{free_port()}", "--concurrency", "1", "--requests", "2",
                 "--profile", "tiny"])
    err = capsys.readouterr().err
    assert code == 1 and "no request succeeded: cannot connect to http://127.0.0.1:" in err


def test_the_sweep_stops_after_the_first_missed_level() -> None:
    seen: list[int] = []

    def level(concurrency: int, rate: float | None, shapes: list[RequestShape],
              arrivals: list[float]) -> tuple[list[RequestRecord], float]:
        seen.append(concurrency)
        ttft = 0.1 * concurrency  # slower as more people share the machine
        return [RequestRecord(s.prompt_tokens, 2, 0.0, [ttft, ttft + 0.01], ttft + 0.01) for s in shapes], 1.0

    summaries = run_sweep(LoadPlan(profile="tiny", concurrency=(1, 2, 4, 8, 16), slo=Slo(ttft=0.3)), level)
    assert seen == [1, 2, 4] and [s.slo_met for s in summaries] == [True, True, False]
    all_levels = run_sweep(LoadPlan(profile="tiny", concurrency=(1, 4, 8), slo=Slo(ttft=0.3), stop_early=False), level)
    assert len(all_levels) == 3
    with pytest.raises(BenchmarkError, match="Concurrency levels"):
        run_sweep(LoadPlan(concurrency=(0,)), level)
