"""Tokenometer against llama.cpp's own llama-bench on the same model and settings, run alternately in one sitting.

Usage: .venv/bin/python benchmarks/vs_llama_bench.py --llama-bench PATH/TO/llama-bench [--model GGUF]
       [--threads 2] [--pairs 3] [--reps 5]
       .venv/bin/python benchmarks/vs_llama_bench.py --threadpool-ab LIB_DIR [--pairs 3] ...

The second form shows what llama-bench's ggml threadpool is worth: Tokenometer with and without it, alternately,
on the llama.cpp libraries in LIB_DIR (LLAMA_CPP_LIB_PATH), e.g. a build configured with -DGGML_OPENMP=OFF
(macOS's default), where ggml otherwise starts and joins its threads on every graph compute.

Build llama-bench from the llama.cpp sources inside the installed llama-cpp-python's sdist, with the same
options as the pip build, so both sides run the same code (`cmake --build build --target llama-bench`).
Each pair runs both tools back to back (the order alternates) and prints their pp512/tg128 t/s; the ratio
is Tokenometer's mean over llama-bench's mean. On a shared machine, pairs with a large spread mean noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rates(rows: list[dict], *, n_prompt: int, n_gen: int) -> dict[str, tuple[float, float]]:
    out = {}
    for row in rows:
        if row.get("n_prompt") == n_prompt and row.get("n_gen") == 0:
            out["pp"] = (row["avg_ts"], row["stddev_ts"])
        elif row.get("n_gen") == n_gen and row.get("n_prompt") == 0:
            out["tg"] = (row["avg_ts"], row["stddev_ts"])
    return out


def run_llama_bench(binary: Path, model: Path, *, threads: int, reps: int) -> dict[str, tuple[float, float]]:
    done = subprocess.run([str(binary), "-m", str(model), "-p", "512", "-n", "128", "-t", str(threads),
                           "-r", str(reps), "-o", "json"], capture_output=True, text=True, check=True)
    return _rates(json.loads(done.stdout), n_prompt=512, n_gen=128)


def run_tokenometer(model: Path, *, threads: int, reps: int,
                    env: dict[str, str] | None = None) -> dict[str, tuple[float, float]]:
    done = subprocess.run([sys.executable, "-m", "models.cli", "bench", str(model), "-p", "512", "-n", "128",
                           "-t", str(threads), "-r", str(reps), "-o", "json", "--no-save"],
                          capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    return _rates(json.loads(done.stdout), n_prompt=512, n_gen=128)


def threadpool_ab(lib_dir: Path, model: Path, *, threads: int, reps: int, pairs: int) -> int:
    """Tokenometer on LIB_DIR's libraries with and without the threadpool, alternating; ratios with/without."""
    import os

    from models.bench.setup import NO_THREADPOOL_ENV

    base = {**os.environ, "LLAMA_CPP_LIB_PATH": str(lib_dir)}
    base.pop(NO_THREADPOOL_ENV, None)
    without = {**base, NO_THREADPOOL_ENV: "1"}
    got: dict[str, dict[str, list[float]]] = {"with": {"pp": [], "tg": []}, "without": {"pp": [], "tg": []}}
    print(f"libraries: {lib_dir}")
    print(f"{'pair':>4} {'first':>8} | {'with pp512':>18} {'without pp512':>18} | {'with tg128':>18} "
          f"{'without tg128':>18}")
    for pair in range(1, pairs + 1):
        order = ("with", "without") if pair % 2 else ("without", "with")
        rows = {name: run_tokenometer(model, threads=threads, reps=reps, env=base if name == "with" else without)
                for name in order}
        for name in ("with", "without"):
            for test in ("pp", "tg"):
                got[name][test].append(rows[name][test][0])

        def cell(value: tuple[float, float]) -> str:
            return f"{value[0]:9.2f} ± {value[1]:6.2f}"

        print(f"{pair:>4} {order[0]:>8} | {cell(rows['with']['pp']):>18} {cell(rows['without']['pp']):>18} | "
              f"{cell(rows['with']['tg']):>18} {cell(rows['without']['tg']):>18}", flush=True)
    for test, label in (("pp", "pp512"), ("tg", "tg128")):
        ratio = statistics.fmean(got["with"][test]) / statistics.fmean(got["without"][test])
        per_pair = ", ".join(f"{a / b:.3f}" for a, b in zip(got["with"][test], got["without"][test]))
        print(f"{label}: with/without threadpool = {ratio:.3f} (pairs: {per_pair})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-bench", type=Path)
    parser.add_argument("--threadpool-ab", type=Path, metavar="LIB_DIR",
                        help="instead: Tokenometer with/without the threadpool on these llama.cpp libraries")
    parser.add_argument("--model", type=Path, help="GGUF (default: the starter model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    if args.model is None:
        from models.hub.starter import ensure_starter_model

        args.model = ensure_starter_model()
    if args.threadpool_ab:
        return threadpool_ab(args.threadpool_ab, args.model, threads=args.threads, reps=args.reps, pairs=args.pairs)
    if args.llama_bench is None:
        parser.error("--llama-bench PATH is needed (or --threadpool-ab LIB_DIR)")
    ours: dict[str, list[float]] = {"pp": [], "tg": []}
    theirs: dict[str, list[float]] = {"pp": [], "tg": []}
    print(f"{'pair':>4} {'first':>11} | {'Tokenometer pp512':>18} {'llama-bench pp512':>18} | "
          f"{'Tokenometer tg128':>18} {'llama-bench tg128':>18}")
    for pair in range(1, args.pairs + 1):
        llama_first = pair % 2 == 1
        if llama_first:
            lb = run_llama_bench(args.llama_bench, args.model, threads=args.threads, reps=args.reps)
            tk = run_tokenometer(args.model, threads=args.threads, reps=args.reps)
        else:
            tk = run_tokenometer(args.model, threads=args.threads, reps=args.reps)
            lb = run_llama_bench(args.llama_bench, args.model, threads=args.threads, reps=args.reps)
        for test in ("pp", "tg"):
            ours[test].append(tk[test][0])
            theirs[test].append(lb[test][0])

        def cell(value: tuple[float, float]) -> str:
            return f"{value[0]:9.2f} ± {value[1]:6.2f}"

        print(f"{pair:>4} {'llama-bench' if llama_first else 'Tokenometer':>11} | {cell(tk['pp']):>18} "
              f"{cell(lb['pp']):>18} | {cell(tk['tg']):>18} {cell(lb['tg']):>18}", flush=True)
    for test, label in (("pp", "pp512"), ("tg", "tg128")):
        ratio = statistics.fmean(ours[test]) / statistics.fmean(theirs[test])
        per_pair = ", ".join(f"{a / b:.3f}" for a, b in zip(ours[test], theirs[test]))
        print(f"{label}: Tokenometer/llama-bench = {ratio:.3f} (pairs: {per_pair})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
