"""-r auto against fixed -r 5 on the starter model's default tests (pp512, tg128): wall time and interval reached.

  python benchmarks/adaptive_check.py [-t THREADS] [--model FILE] [-p 512] [-n 128]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.bench.trust.adaptive import AdaptivePlan, ci95  # noqa: E402
from models.bench.runner import BenchRunner  # noqa: E402
from models.bench.spec import BenchJob, BenchParams, BenchTest, default_threads  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: the starter model)")
    parser.add_argument("-t", "--threads", type=int, default=None)
    parser.add_argument("-p", type=int, default=512)
    parser.add_argument("-n", type=int, default=128)
    args = parser.parse_args()
    if args.model is None:
        from models.hub.starter import ensure_starter_model

        args.model = ensure_starter_model()
    params = BenchParams(n_threads=args.threads or default_threads(), n_gpu_layers=0)
    tests = (BenchTest(n_prompt=args.p, n_gen=0), BenchTest(n_prompt=0, n_gen=args.n))
    print(f"{'mode':<8} {'test':<8} {'reps':>4} {'t/s':>9} {'±95% CI':>9} {'CI/mean':>8} {'met':>4} {'wall s':>7}")
    for label, job in (("-r 5", BenchJob(model_path=args.model, params=params, tests=tests, repetitions=5)),
                       ("-r auto", BenchJob(model_path=args.model, params=params, tests=tests,
                                            adaptive=AdaptivePlan()))):
        started = time.perf_counter()
        results = BenchRunner().run([job])
        wall = time.perf_counter() - started
        for r in results:
            if r.status != "ok":
                print(f"{label:<8} {r.test:<8} failed: {r.error}")
                continue
            half = ci95(r.samples_ts)
            print(f"{label:<8} {r.test:<8} {len(r.samples_ts):>4} {r.avg_ts:9.2f} {half:9.2f} "
                  f"{half / r.avg_ts:8.1%} {'yes' if r.ci_met else 'no':>4} {wall:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
