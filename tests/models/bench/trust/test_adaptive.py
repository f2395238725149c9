"""-r auto: Student-t intervals, the stopping rule, the plan's checks, and real adaptive runs (runner and CLI)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from models.bench.trust.adaptive import AdaptivePlan, ci95, interval_fields, relative_ci95, t975
from models.bench.runner import BenchRunner
from models.bench.spec import BenchJob, BenchParams, BenchTest, check_job
from models.cli import build_parser
from models.cli.bench import build_sweep
from tests.models.gguf.factory import Shape, write_model

ROOT = Path(__file__).resolve().parents[4]


def test_student_t_quantiles() -> None:
    assert t975(1) == 12.706 and t975(4) == 2.776 and t975(30) == 2.042
    assert t975(60) == pytest.approx(2.000, abs=0.002) and t975(120) == pytest.approx(1.980, abs=0.002)
    with pytest.raises(ValueError, match="at least 1 degree"):
        t975(0)


def test_interval_of_the_mean() -> None:
    assert ci95([1.0, 2.0, 3.0]) == pytest.approx(4.303 / math.sqrt(3))  # sd 1, n 3
    assert ci95([5.0]) == 0 and relative_ci95([5.0]) == math.inf
    assert relative_ci95([100.0, 100.0, 100.0]) == 0
    fixed = interval_fields([99.0, 100.0, 101.0], None)
    assert fixed["ci95_ts"] == pytest.approx(4.303 / math.sqrt(3)) and fixed["ci_target"] == 0 and not fixed["ci_met"]
    adaptive = interval_fields([99.0, 100.0, 101.0], AdaptivePlan(target=0.05))
    assert adaptive["ci_target"] == 0.05 and adaptive["ci_met"]


def test_stopping_rule() -> None:
    plan = AdaptivePlan(target=0.02, min_reps=3, max_reps=6, max_seconds=10.0)
    assert not plan.done([100.0, 100.0], 0.1)  # below the minimum, however tight
    assert plan.done([100.0, 100.5, 99.5], 0.1)  # within 2%
    assert not plan.done([100.0, 120.0, 80.0], 0.1)  # too wide: go on
    assert plan.done([100.0, 120.0, 80.0], 10.0)  # out of time
    assert plan.done([100.0, 120.0, 80.0, 110.0, 90.0, 100.0], 0.1)  # the repetition cap


@pytest.mark.parametrize("plan, match", [
    (AdaptivePlan(target=0.0), "between 0 and 1"), (AdaptivePlan(min_reps=1), "at least 2"),
    (AdaptivePlan(min_reps=5, max_reps=4), "below the minimum"), (AdaptivePlan(max_seconds=0), "positive"),
])
def test_impossible_plans_are_refused(plan: AdaptivePlan, match: str) -> None:
    job = BenchJob(model_path=Path("m.gguf"), params=BenchParams(n_threads=1), tests=(BenchTest(8, 0),),
                   adaptive=plan)
    assert match in (check_job(job) or "")
    assert BenchJob.from_json(job.to_json()).adaptive == plan  # travels to the worker intact


def _tiny(tmp_path: Path) -> Path:
    return write_model(tmp_path / "tiny.gguf", Shape(n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256))


def test_real_runs_stop_at_the_target_or_the_cap(tmp_path: Path) -> None:
    model = _tiny(tmp_path)
    tests = (BenchTest(n_prompt=16, n_gen=0), BenchTest(n_prompt=0, n_gen=8))
    easy = BenchJob(model_path=model, params=BenchParams(n_threads=1, n_gpu_layers=0), tests=tests,
                    adaptive=AdaptivePlan(target=0.9, min_reps=3, max_reps=12))
    hard = BenchJob(model_path=model, params=BenchParams(n_threads=1, n_gpu_layers=0), tests=tests,
                    adaptive=AdaptivePlan(target=1e-9, min_reps=3, max_reps=5))
    results = BenchRunner().run([easy, hard])
    assert [r.status for r in results] == ["ok"] * 4, [r.error for r in results]
    for r, plan in zip(results, [easy.adaptive] * 2 + [hard.adaptive] * 2):
        assert plan is not None
        # The worker stopped at the first repetition where the rule said so (re-applied to its own samples).
        n = len(r.samples_ts)
        stops = [plan.done(r.samples_ts[:k], sum(r.samples_ns[:k]) / 1e9) for k in range(1, n + 1)]
        assert stops[-1] and not any(stops[:-1])
        assert r.ci95_ts == pytest.approx(ci95(r.samples_ts)) and r.ci_target == plan.target
        assert r.ci_met == (relative_ci95(r.samples_ts) <= plan.target)
    assert all(len(r.samples_ts) == 5 and not r.ci_met for r in results[2:])  # unreachable: the cap, not met
    assert all(3 <= len(r.samples_ts) <= 12 for r in results[:2])


def test_cli_takes_r_auto(tmp_path: Path) -> None:
    args = build_parser().parse_args(["bench", "-r", "auto", "-p", "8"])
    assert build_sweep(args).adaptive == AdaptivePlan()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "-r", "often"])
    model = _tiny(tmp_path)
    done = subprocess.run([sys.executable, "-m", "models.cli", "bench", str(model), "-p", "16", "-n", "4", "-r",
                           "auto", "-t", "1", "-o", "json", "--no-save"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    for row in json.loads(done.stdout):
        assert 3 <= len(row["samples_ts"]) <= 30 and row["ci_target"] == 0.02
        assert row["ci_met"] == (row["ci95_ts"] / row["avg_ts"] <= 0.02)
