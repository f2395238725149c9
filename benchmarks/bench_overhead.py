"""The benchmark engine's own overhead: its wall time per repetition against the time llama.cpp's counters account for."""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path

# Run from a checkout without installing: the project root must be importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.bench.events import BenchEvent  # noqa: E402
from models.bench.runner import BenchRunner  # noqa: E402
from models.bench.spec import BenchJob, BenchParams, BenchTest  # noqa: E402

log = logging.getLogger(__name__)


def measure(model: Path, *, threads: int, n_prompt: int, n_gen: int, repetitions: int) -> list[dict[str, float]]:
    """One row per test: mean wall ms (the engine's timer), mean llama.cpp ms (llama_perf_context), overhead."""
    samples: dict[str, list[tuple[float, float]]] = {}

    def on_event(_job: BenchJob, event: BenchEvent) -> None:
        if event.kind == "sample" and "perf" in event.data:
            perf = event.data["perf"]
            # The worker resets the counters before each repetition, so these cover exactly that repetition.
            llama_ms = perf["t_p_eval_ms"] + perf["t_eval_ms"]
            samples.setdefault(event.data["test"], []).append((event.data["ns"] / 1e6, llama_ms))

    job = BenchJob(model_path=model, params=BenchParams(n_threads=threads),
                   tests=(BenchTest(n_prompt, 0), BenchTest(0, n_gen)), repetitions=repetitions)
    results = BenchRunner(on_event=on_event, worker_args=("--perf",)).run([job])
    rows = []
    for result in results:
        if result.status != "ok":
            raise SystemExit(f"{result.test} failed: {result.error}")
        pairs = samples[result.test]
        wall = statistics.mean(w for w, _ in pairs)
        inner = statistics.mean(c for _, c in pairs)
        rows.append({"test": result.test, "reps": len(pairs), "wall_ms": wall, "llama_ms": inner,
                     "overhead_pct": 100.0 * (wall - inner) / inner, "t/s": result.avg_ts,
                     "max_overhead_pct": max(100.0 * (w - c) / c for w, c in pairs)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="GGUF file (default: the starter model)")
    parser.add_argument("-t", "--threads", type=int, default=2)
    parser.add_argument("-p", "--n-prompt", type=int, default=512)
    parser.add_argument("-n", "--n-gen", type=int, default=128)
    parser.add_argument("-r", "--repetitions", type=int, default=5)
    args = parser.parse_args(argv)
    if args.model is None:
        from models.hub.starter import ensure_starter_model

        args.model = ensure_starter_model()
    rows = measure(args.model, threads=args.threads, n_prompt=args.n_prompt, n_gen=args.n_gen,
                   repetitions=args.repetitions)
    print(f"model: {args.model.name}, threads: {args.threads}, repetitions: {args.repetitions}")
    print("| test   | reps | engine wall ms | llama.cpp ms | overhead % | worst rep % |      t/s |")
    print("| ------ | ---: | -------------: | -----------: | ---------: | ----------: | -------: |")
    for row in rows:
        print(f"| {row['test']:<6} | {row['reps']:>4} | {row['wall_ms']:>14.2f} | {row['llama_ms']:>12.2f} | "
              f"{row['overhead_pct']:>10.2f} | {row['max_overhead_pct']:>11.2f} | {row['t/s']:>8.2f} |")
    worst = max(row["overhead_pct"] for row in rows)
    print(f"\ngoal: overhead under 2% -> {'met' if worst < 2.0 else 'NOT met'} (worst mean {worst:.2f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
