"""Tokenometer's batched decoding against llama.cpp's own llama-batched-bench, same model and settings, alternately.

Usage: .venv/bin/python benchmarks/vs_batched_bench.py --batched-bench PATH/TO/llama-batched-bench [--model GGUF]
       [--threads 2] [--pairs 3] [--npp 128] [--ntg 32] [--npl 1,2,4,8] [--pps]

Build llama-batched-bench from the llama.cpp sources inside the installed llama-cpp-python's sdist, with the
same options as the pip build (`cmake --build build --target llama-batched-bench`), so both run the same code.
Both get the same explicit context (-c), n_batch, n_ubatch and threads. Each pair runs both tools back to
back (the order alternates); the table gives Tokenometer's S_PP and S_TG over llama-batched-bench's per test.
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

Key = tuple[int, int, int]


def _parse(stdout: str) -> dict[Key, dict]:
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return {(r["pp"], r["tg"], r["pl"]): r for r in rows}


def run_reference(binary: Path, args: argparse.Namespace, n_ctx: int) -> dict[Key, dict]:
    command = [str(binary), "-m", str(args.model), "-c", str(n_ctx), "-b", "2048", "-ub", "512", "-t",
               str(args.threads), "-npp", args.npp, "-ntg", args.ntg, "-npl", args.npl, "--output-format", "jsonl"]
    if args.pps:
        command.append("-pps")
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return _parse(done.stdout + done.stderr)


def run_tokenometer(args: argparse.Namespace, n_ctx: int) -> dict[Key, dict]:
    command = [sys.executable, "-m", "models.cli", "batched", str(args.model), "-c", str(n_ctx), "-b", "2048",
               "-ub", "512", "-t", str(args.threads), "-npp", args.npp, "-ntg", args.ntg, "-npl", args.npl,
               "-o", "jsonl", "--no-save"]
    if args.pps:
        command.append("-pps")
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return _parse(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batched-bench", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="GGUF (default: the starter model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--npp", default="128")
    parser.add_argument("--ntg", default="32")
    parser.add_argument("--npl", default="1,2,4,8")
    parser.add_argument("--pps", action="store_true", help="one prompt shared by the sequences")
    args = parser.parse_args()
    if args.model is None:
        from models.hub.starter import ensure_starter_model

        args.model = ensure_starter_model()
    from models.bench.capacity.batched import BatchedPlan

    plan = BatchedPlan(n_prompt=tuple(int(v) for v in args.npp.split(",")),
                       n_gen=tuple(int(v) for v in args.ntg.split(",")),
                       n_parallel=tuple(int(v) for v in args.npl.split(",")), pp_shared=args.pps)
    n_ctx = plan.context()
    ours: dict[Key, dict[str, list[float]]] = {}
    theirs: dict[Key, dict[str, list[float]]] = {}
    for pair in range(1, args.pairs + 1):
        if pair % 2:
            ref, tok = run_reference(args.batched_bench, args, n_ctx), run_tokenometer(args, n_ctx)
        else:
            tok, ref = run_tokenometer(args, n_ctx), run_reference(args.batched_bench, args, n_ctx)
        for store, rows in ((ours, tok), (theirs, ref)):
            for key, row in rows.items():
                for metric in ("speed_pp", "speed_tg"):
                    store.setdefault(key, {}).setdefault(metric, []).append(row[metric])
        print(f"pair {pair} done ({'llama-batched-bench' if pair % 2 else 'Tokenometer'} first)", flush=True)
    print(f"\nn_ctx {n_ctx}, {args.threads} threads, {args.pairs} pairs; t/s are means over the pairs\n")
    print("|   PP |   TG |  B | Tokenometer S_PP | reference S_PP | ratio | Tokenometer S_TG | reference S_TG | ratio |")
    print("|-----:|-----:|---:|-----------------:|---------------:|------:|-----------------:|---------------:|------:|")
    for key in sorted(theirs):
        if key not in ours:
            print(f"| {key[0]:>4} | {key[1]:>4} | {key[2]:>2} | missing in Tokenometer's output |")
            continue
        cells = []
        for metric in ("speed_pp", "speed_tg"):
            a, b = statistics.fmean(ours[key][metric]), statistics.fmean(theirs[key][metric])
            cells.append(f"{a:16.2f} | {b:14.2f} | {a / b:5.3f}")
        print(f"| {key[0]:>4} | {key[1]:>4} | {key[2]:>2} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
