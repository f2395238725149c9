"""On a GPU machine: the benchmark engine's GPU options as llama-bench's (-ngl -1 offloads every layer of a model with
100 blocks where 99 did not, -nkvo keeps the KV cache on the host, -sm none/-mg), and nothing logged in timed reps.

Usage: PYTHONPATH=.:build/gpu-kit/site LLAMA_CPP_LIB_PATH=<CUDA libs> python benchmarks/gpu_bench_check.py
       --deep build/gpu-bench/deep100.gguf [--model starter.gguf]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.bench.events import BenchEvent  # noqa: E402
from models.bench.runner import BenchRunner  # noqa: E402
from models.bench.spec import BenchJob, BenchParams, BenchTest  # noqa: E402

OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")


def run(model: Path, tests: tuple[BenchTest, ...], **params: object) -> dict[str, object]:
    lines: list[str] = []
    timed: list[str] = []
    in_rep = [False]

    def on_event(_job: BenchJob, event: BenchEvent) -> None:
        if event.kind == "progress":
            in_rep[0] = event.data.get("phase") == "rep"
        elif event.kind == "sample":
            in_rep[0] = False
        elif event.kind == "log":
            lines.append(str(event.data.get("message")))
            if in_rep[0]:
                timed.append(str(event.data.get("message")))

    job = BenchJob(model_path=model, params=BenchParams(n_threads=4, **params), tests=tests,  # type: ignore[arg-type]
                   repetitions=3)
    results = BenchRunner(on_event=on_event).run([job])
    offload = next((m.group(0) for line in lines for m in [OFFLOADED.search(line)] if m), "no offload line")
    limit = next((line for line in lines if "RLIMIT_DATA" in line), "no data limit (GPU build)")
    return {"results": results, "offload": offload, "timed_logs": len(timed), "limit": limit}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deep", type=Path, required=True, help="a GGUF with 100 blocks")
    parser.add_argument("--model", type=Path, help="a real model for the t/s line (default: none)")
    args = parser.parse_args()
    small = (BenchTest(64, 0), BenchTest(0, 32))
    cases = [("deep, ngl -1 (default)", args.deep, {}), ("deep, ngl 99 (old default)", args.deep, {"n_gpu_layers": 99}),
             ("deep, ngl -1, nkvo 1", args.deep, {"no_kv_offload": True}),
             ("deep, sm none, mg 0", args.deep, {"split_mode": "none", "main_gpu": 0})]
    if args.model:
        cases.append(("model, ngl -1", args.model, {}))
    print("| case | offload | KV buffers | pp64 t/s | tg32 t/s | logs in timed reps | status |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for label, model, params in cases:
        got = run(model, small, **params)
        results = got["results"]
        assert isinstance(results, list)
        kv = ", ".join(f"{k}={v / 2**20:.1f}MiB" for k, v in results[0].buffers.items() if k.endswith(":KV"))
        status = ",".join(r.status if r.status == "ok" else f"{r.status}: {r.error[:80]}" for r in results)
        print(f"| {label} | {got['offload']} | {kv} | {results[0].avg_ts:.1f} | {results[1].avg_ts:.1f} | "
              f"{got['timed_logs']} | {status} |", flush=True)
    print(f"\n{got['limit']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
