"""The LocalScore preset and score: its test set, its formula, and one real run of the preset on a tiny model."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from models.bench.localscore import (LOCALSCORE_TESTS, localscore, localscore_job, localscore_tests, score_of)
from models.bench.spec import BenchResult, check_job
from tests.models.gguf.factory import Shape, write_model

ROOT = Path(__file__).resolve().parents[3]


def test_the_preset_runs_localscore_s_nine_pairs() -> None:
    tests = localscore_tests()
    prompts = [t for t in tests if t.kind == "pp"]
    gens = [t for t in tests if t.kind == "tg"]
    # localscore.cpp's get_baseline_test_configs, prompt sizes run once each.
    assert [(t.n_depth, t.n_gen) for t in gens] == [(p, g) for p, g, _ in LOCALSCORE_TESTS]
    assert sorted(t.n_prompt for t in prompts) == [16, 64, 384, 1024, 1280, 2048, 4096]
    assert all(t.n_depth == 0 for t in prompts)
    job = localscore_job("/m.gguf", n_threads=4)
    assert check_job(job) is None
    assert job.params.flash_attn == "off" and job.params.n_batch == 2048 and job.params.n_ubatch == 512
    assert job.repetitions == 1 and job.params.n_gpu_layers == -1


def test_score_is_localscore_s_formula() -> None:
    # The README's formula: 10 x cbrt(pp x tg x 1000 / ttft_ms).
    assert score_of(1000.0, 100.0, 1000.0) == pytest.approx(10 * (1000 * 100 * 1) ** (1 / 3))
    assert score_of(0.0, 100.0, 10.0) == 0 and score_of(10.0, 10.0, 0.0) == 0


def _results(pp: float, tg: float) -> list[BenchResult]:
    return ([BenchResult(n_prompt=t.n_prompt, n_gen=0, avg_ts=pp, status="ok") for t in localscore_tests()
             if t.kind == "pp"]
            + [BenchResult(n_gen=t.n_gen, n_depth=t.n_depth, avg_ts=tg, status="ok") for t in localscore_tests()
               if t.kind == "tg"])


def test_score_from_results_averages_the_nine() -> None:
    s = localscore(_results(pp=2000.0, tg=50.0))
    assert s.complete and len(s.tests) == 9
    ttfts = [1000 * (p / 2000.0 + 1 / 50.0) for p, _, _ in LOCALSCORE_TESTS]
    assert s.avg_ttft_ms == pytest.approx(sum(ttfts) / 9)
    assert s.score == pytest.approx(10 * math.pow(2000 * 50 * 1000 / s.avg_ttft_ms, 1 / 3))


def test_missing_or_failed_tests_give_no_score() -> None:
    results = _results(pp=2000.0, tg=50.0)
    results[0].status = "failed"  # pp16... the first prompt size in the list
    dropped = [r for r in results if not (r.n_gen == 16 and r.n_depth == 1024)]
    s = localscore(dropped)
    assert s.score == 0 and not s.complete
    assert f"pp{results[0].n_prompt}" in s.missing and "tg16 @ d1024" in s.missing
    assert s.tests and s.avg_gen_tps == pytest.approx(50.0)  # the parts it has are still given


def test_real_run_of_the_preset(tmp_path: Path) -> None:
    """tokenometer bench --localscore: the whole preset through the real runner and llama.cpp, on a tiny random
    model so it takes seconds; the rows in JSON, the score on stderr."""
    model = write_model(tmp_path / "tiny.gguf", Shape(n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256,
                                                     ctx_train=8192))
    done = subprocess.run([sys.executable, "-m", "models.cli", "bench", str(model), "--localscore", "-t", "1",
                           "-ngl", "0", "-o", "json", "--no-save"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    results = [BenchResult.from_json(row) for row in json.loads(done.stdout)]
    assert [r.test for r in results] == [t.name for t in localscore_tests()]
    assert all(str(r.flash_attn) in ("off", "0") and r.n_batch == 2048 and len(r.samples_ts) == 1 for r in results)
    s = localscore(results)
    assert s.complete and s.score > 0
    assert all(t.ttft_ms > 1000 * t.n_prompt / t.prompt_tps for t in s.tests)
    assert f"LocalScore {s.score:.0f}  tiny.gguf (threads 1, ngl 0)" in done.stderr
