"""Tokenometer's perplexity and KL divergence against llama.cpp's own llama-perplexity, same model, text and settings.

Usage: .venv/bin/python benchmarks/vs_llama_perplexity.py --perplexity PATH/TO/llama-perplexity --text FILE
       [--model GGUF] [--threads 2] [--ctx 128,256,512] [--chunks 8] [--pairs 2] [--workdir DIR]

Build llama-perplexity from the llama.cpp sources vendored in the installed llama-cpp-python's sdist
(`cmake --build build --target llama-perplexity`), so both run the same code. The reference is the given model
(the starter by default); the candidate a Q4_0 of it written by llama.cpp's quantize API. For each chunk size:
  1. both tools compute the reference's perplexity and save its log-probabilities (--kl-divergence-base),
  2. both compute the candidate's KL divergence, each against its own reference file,
  3. the two reference files are compared byte for byte (Tokenometer's adds a trailer after llama.cpp's bytes).
Each tool runs as its own process (load, tokenize, evaluate, exit) and its wall time is taken from outside; the
order alternates between pairs and the fastest of each is kept; the CPU seconds (user + system) of each process
are given too, as they vary less than wall time on a shared machine. Ratios are Tokenometer over llama-perplexity.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_ours(args: argparse.Namespace) -> None:
    """The child process: load the model, run one quality plan, print its result as JSON."""
    import llama_cpp as ll

    from models.bench.quality.job import QualityPlan, quality_context, run_quality

    quiet = ll.llama_log_callback(lambda level, text, user: None)
    ll.llama_log_set(quiet, None)
    ll.llama_backend_init()
    model = ll.llama_model_load_from_file(str(args.model).encode(), ll.llama_model_default_params())
    plan = QualityPlan(text=str(args.text), n_ctx=args.c, n_chunks=args.chunks, reference=args.ref or "",
                       save_reference=args.save_ref or "")
    result = run_quality(ll, model, plan, n_batch=2048,
                         context=lambda shape: quality_context(ll, model, shape, n_threads=args.threads))
    print(json.dumps(result.to_json()))


CPU_SECONDS: list[float] = []  # user + system seconds of each child, in order: less noisy than wall on a busy machine


def timed(command: list[str]) -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_SECONDS.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stdout + done.stderr


def cpp(args: argparse.Namespace, model: Path, c: int, extra: list[str]) -> tuple[float, dict[str, float]]:
    command = [str(args.perplexity), "-m", str(model), "-f", str(args.text), "-c", str(c), "-b", "2048", "-ub", "512",
               "-t", str(args.threads), "--chunks", str(args.chunks), *extra]
    wall, out = timed(command)
    found: dict[str, float] = {}
    if m := re.search(r"Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)", out):
        found.update(ppl=float(m[1]), ppl_err=float(m[2]))
    if m := re.search(r"Mean PPL\(Q\)\s*:\s*([\d.]+) ±\s*([\d.]+)", out):
        found.update(ppl=float(m[1]), ppl_err=float(m[2]))
    for key, pattern in (("kld_mean", r"Mean    KLD:\s*([\d.]+)"), ("kld_median", r"Median  KLD:\s*([\d.]+)"),
                         ("kld_p99", r"99.0%   KLD:\s*([\d.]+)"), ("same_top", r"Same top p:\s*([\d.]+)"),
                         ("rms_dp", r"RMS Δp    :\s*([\d.]+)")):
        if m := re.search(pattern, out):
            found[key] = float(m[1]) / (100 if key in ("same_top", "rms_dp") else 1)
    return wall, found


def ours(args: argparse.Namespace, model: Path, c: int, extra: list[str]) -> tuple[float, dict[str, Any]]:
    command = [sys.executable, __file__, "--child", "--model", str(model), "--text", str(args.text), "-c", str(c),
               "--chunks", str(args.chunks), "--threads", str(args.threads), *extra]
    wall, out = timed(command)
    result = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    found = {"ppl": result["ppl"], "ppl_err": result["ppl_err"], "bpb": result["bits_per_byte"],
             "n_chunk": result["n_chunk"]}
    found.update({k: v for k, v in (result.get("kld") or {}).items()})
    return wall, found


def quantize(source: Path, target: Path) -> Path:
    import llama_cpp as ll

    if not target.exists():
        params = ll.llama_model_quantize_default_params()
        params.ftype = ll.LLAMA_FTYPE_MOSTLY_Q4_0
        params.allow_requantize = True
        if ll.llama_model_quantize(str(source).encode(), str(target).encode(), params) != 0:
            raise SystemExit("llama.cpp could not quantize the model")
    return target


def pct(a: float, b: float) -> str:
    return f"{100 * (a - b) / b:+.3f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--perplexity", type=Path, help="llama-perplexity binary")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--text", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", default="128,256,512")
    parser.add_argument("-c", type=int, default=512)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tokenometer-vs-perplexity"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ref", help=argparse.SUPPRESS)
    parser.add_argument("--save-ref", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_ours(args)
        return
    if args.perplexity is None:
        parser.error("--perplexity is required")
    if args.model is None:
        from models.hub.starter import ensure_starter_model

        args.model = ensure_starter_model()
    args.workdir.mkdir(parents=True, exist_ok=True)
    candidate = quantize(args.model, args.workdir / "candidate-Q4_0.gguf")
    print(f"reference {args.model.name}, candidate {candidate.name} (Q4_0 of it), text {args.text.name}, "
          f"{args.threads} threads, -b 2048 -ub 512, up to {args.chunks} chunks, fastest of {args.pairs} pairs\n")
    print("| -c | chunks | what | PPL llama-perplexity | PPL Tokenometer | Δ | KLD llama-perplexity | KLD Tokenometer "
          "| Δ | same top (lp / tk) | bits/byte | wall lp s | wall tk s | ratio | CPU lp s | CPU tk s | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c in (int(v) for v in args.ctx.split(",")):
        ref_cpp, ref_ours = args.workdir / f"ref-{c}.cpp.kld", args.workdir / f"ref-{c}.tk.kld"
        steps = (("reference PPL", args.model, ["--kl-divergence-base", str(ref_cpp)], ["--save-ref", str(ref_ours)]),
                 ("candidate KLD", candidate, ["--kl-divergence-base", str(ref_cpp), "--kl-divergence"],
                  ["--ref", str(ref_ours)]))
        for what, model, cpp_extra, our_extra in steps:
            walls: dict[str, list[float]] = {"cpp": [], "ours": []}
            cpus: dict[str, list[float]] = {"cpp": [], "ours": []}
            figures: dict[str, dict[str, Any]] = {}
            for pair in range(args.pairs):
                order = ("cpp", "ours") if pair % 2 == 0 else ("ours", "cpp")
                for tool in order:
                    wall, found = (cpp(args, model, c, cpp_extra) if tool == "cpp"
                                   else ours(args, model, c, our_extra))
                    walls[tool].append(wall)
                    cpus[tool].append(CPU_SECONDS[-1])
                    figures[tool] = found
            a, b = figures["cpp"], figures["ours"]
            wa, wb = min(walls["cpp"]), min(walls["ours"])
            ca, cb = min(cpus["cpp"]), min(cpus["ours"])
            kld = (f"{a.get('kld_mean', float('nan')):.6f} | {b.get('kld_mean', float('nan')):.6f} | "
                   f"{pct(b['kld_mean'], a['kld_mean'])}" if "kld_mean" in a and "kld_mean" in b else "– | – | –")
            top = (f"{100 * a['same_top']:.2f}% / {100 * b['same_top']:.2f}%" if "same_top" in a and "same_top" in b
                   else "–")
            print(f"| {c} | {b['n_chunk']} | {what} | {a['ppl']:.4f} ± {a['ppl_err']:.4f} | {b['ppl']:.4f} ± "
                  f"{b['ppl_err']:.4f} | {pct(b['ppl'], a['ppl'])} | {kld} | {top} | {b['bpb']:.4f} | {wa:.2f} | "
                  f"{wb:.2f} | {wb / wa:.3f} | {ca:.2f} | {cb:.2f} | {cb / ca:.3f} |", flush=True)
        same = _same_prefix(ref_cpp, ref_ours)
        print(f"|   |   | reference files | {same} |||||||||||", flush=True)


def _same_prefix(cpp_file: Path, our_file: Path) -> str:
    a, b = cpp_file.read_bytes(), our_file.read_bytes()
    if b[:len(a)] == a:
        return f"identical for llama-perplexity's {len(a):,} bytes (+{len(b) - len(a)} bytes of trailer)"
    diff = sum(x != y for x, y in zip(a, b))
    return f"{diff:,} of {len(a):,} bytes differ"


if __name__ == "__main__":
    main()
