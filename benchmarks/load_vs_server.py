"""The same load profile in llama.cpp here (continuous batching) and against llama-cpp-python's own server.

Usage: .venv/bin/python benchmarks/load_vs_server.py [--model GGUF] [--threads 2] [--concurrency 1,2,4]
       [--profile tiny] [--requests 8]

Starts `python -m llama_cpp.server` on a free 127.0.0.1 port with the same model and threads, runs
`tokenometer load --endpoint` against it, then `tokenometer load` in-process, and prints both tables. That
server serves one request at a time (requests queue, with --interrupt_requests False), so above one person its
TTFT grows with the queue while the in-process engine batches the sequences; at one person both should agree.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _load(args: argparse.Namespace, *extra: str) -> list[dict]:
    command = [sys.executable, "-m", "models.cli", "load", "--profile", args.profile, "--concurrency",
               args.concurrency, "--requests", str(args.requests), "--all-levels", "-o", "json", "--no-save", *extra]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(done.stdout)["levels"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--requests", type=int, default=8)
    args = parser.parse_args()
    if args.model is None:
        from models.hub.starter import ensure_starter_model

        args.model = ensure_starter_model()
    import httpx2

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(args.model), "--host",
                               "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", str(args.threads),
                               "--interrupt_requests", "False", "--verbose", "False"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                time.sleep(0.3)
        remote = _load(args, "--endpoint", f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    local = _load(args, str(args.model), "-t", str(args.threads))
    print(f"profile {args.profile}, {args.requests} requests per level, {args.threads} threads\n")
    print("| people | where | out t/s | t/s each (p90) | TTFT p50 ms | TTFT p90 ms | TPOT p50 ms | E2E p50 ms |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for mine, theirs in zip(local, remote):
        for where, level in (("in-process", mine), ("llama_cpp.server", theirs)):
            print(f"| {level['concurrency']} | {where} | {level['output_throughput']:.1f} | {level['per_user_tps']:.1f} "
                  f"| {level['median_ttft_ms']:.0f} | {level['p90_ttft_ms']:.0f} | {level['median_tpot_ms']:.1f} "
                  f"| {level['median_e2e_ms']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
