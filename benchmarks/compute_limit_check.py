"""Prompt processing against this CPU's compute limit: the f32 GEMM peak, and llama.cpp's pp512 on a few models.

  python benchmarks/compute_limit_check.py [-t THREADS] [-r 3] [--no-synthetic]

Measures the CPU's float32 GEMM peak (models.machine.compute), then pp512 with llama.cpp (the real runner and
worker) on the starter model (Q4_1) and on a generated 4-layer model of width 2048 as f32, f16 and q4_0, and
prints each one's useful FLOP/s (FLOPs per token from its header x t/s) and its share of the GEMM peak: the
factor by which llama.cpp's matmul for that type stands from the f32 GEMM on this machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.bench.runner import BenchRunner  # noqa: E402
from models.bench.spec import BenchJob, BenchParams, BenchTest, default_threads  # noqa: E402
from models.fit.flops import prompt_flops_per_token  # noqa: E402
from models.gguf.split import read_model_header  # noqa: E402
from models.machine.compute import fmt_flops, measure_compute  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-t", "--threads", type=int, default=None)
    parser.add_argument("-r", type=int, default=3, help="repetitions of each pp512")
    parser.add_argument("--no-synthetic", action="store_true", help="only the starter model")
    args = parser.parse_args()
    from models.hub.starter import ensure_starter_model

    models = [("starter Q4_1", ensure_starter_model())]
    tmp = Path(tempfile.mkdtemp(prefix="compute-limit-"))
    if not args.no_synthetic:
        from tests.models.gguf.factory import Shape, write_model

        shape = Shape(n_layer=4, n_embd=2048, n_head=16, n_head_kv=4, n_ff=5632, n_vocab=512)
        models += [(f"L4 E2048 {t}", write_model(tmp / f"{t}.gguf", shape, weight_type=t))
                   for t in ("f32", "f16", "q4_0")]
    before = measure_compute()
    print(f"f32 GEMM peak: {fmt_flops(before.flops)} ({before.threads} BLAS threads, n={before.n}, "
          f"{before.repeats} products, {before.blas})")
    params = BenchParams(n_threads=args.threads or default_threads(), n_gpu_layers=0)
    print(f"{'model':<16} {'pp512 t/s':>10} {'GFLOP/token':>12} {'useful GFLOP/s':>15} {'of GEMM peak':>13}")
    for label, path in models:
        result = BenchRunner().run([BenchJob(model_path=path, params=params, tests=(BenchTest(n_prompt=512, n_gen=0),),
                                             repetitions=args.r)])[0]
        if result.status != "ok":
            print(f"{label:<16} failed: {result.error}")
            continue
        per_token = prompt_flops_per_token(read_model_header(path), n_prompt=512)
        rate = result.avg_ts * per_token
        print(f"{label:<16} {result.avg_ts:10.1f} {per_token / 1e9:12.3f} {rate / 1e9:15.1f} "
              f"{rate / before.flops:13.0%}", flush=True)
    after = measure_compute()
    print(f"f32 GEMM peak again: {fmt_flops(after.flops)} (the machine's noise between the two)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
