"""tokenometer bench --rpc against llama-bench -rpc on the same servers and model, and the cost of the network hop.

Usage: PYTHON benchmarks/vs_llama_bench_rpc.py --llama-bench PATH/TO/llama-bench [--rpc-server PATH/TO/rpc-server]
       [--model GGUF] [--threads 1] [--ngl 20] [--pairs 3] [--reps 5] [--servers 2] [-p 128] [-n 32]

PYTHON is a venv whose llama-cpp-python was built with -DGGML_RPC=on. Build llama-bench (and rpc-server) from the
llama.cpp sources of that same llama-cpp-python, with -DGGML_RPC=ON, so both sides run the same code. The
servers are `tokenometer rpc-server` on 127.0.0.1 (or llama.cpp's rpc-server with --rpc-server), started once
and shared by both tools. Each pair runs both tools back to back (the order alternates) and prints pp/tg t/s;
the ratio is Tokenometer's mean over llama-bench's. Then one sitting of Tokenometer alone measures the hop:
--rpc none (all local) against the model split across the servers, each test run alternately.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
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


def start_servers(count: int, *, threads: int, binary: Path | None) -> tuple[list[subprocess.Popen], str]:
    procs, endpoints = [], []
    for _ in range(count):
        port = _free_port()
        if binary:
            command = [str(binary), "-H", "127.0.0.1", "-p", str(port), "-t", str(threads)]
        else:
            command = [sys.executable, "-m", "models.cli", "rpc-server", "--port", str(port), "--threads",
                       str(threads)]
        procs.append(subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        endpoints.append(f"127.0.0.1:{port}")
    from models.machine.rpc import RpcError, probe_endpoint

    for endpoint in endpoints:
        deadline = time.monotonic() + 180
        while True:
            try:
                probe_endpoint(endpoint, timeout=2, rtt_rounds=1, transfer_bytes=0)
                break
            except RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
    return procs, ",".join(endpoints)


def _rates(rows: list[dict], *, n_prompt: int, n_gen: int) -> dict[str, tuple[float, float]]:
    out = {}
    for row in rows:
        if row.get("n_prompt") == n_prompt and row.get("n_gen") == 0:
            out["pp"] = (row["avg_ts"], row["stddev_ts"])
        elif row.get("n_gen") == n_gen and row.get("n_prompt") == 0:
            out["tg"] = (row["avg_ts"], row["stddev_ts"])
    return out


def run_llama_bench(binary: Path, model: Path, rpc: str, a: argparse.Namespace) -> dict[str, tuple[float, float]]:
    done = subprocess.run([str(binary), "-m", str(model), "-p", str(a.p), "-n", str(a.n), "-t", str(a.threads),
                           "-r", str(a.reps), "-ngl", str(a.ngl), "-rpc", rpc, "-o", "json"],
                          capture_output=True, text=True, check=True)
    return _rates(json.loads(done.stdout), n_prompt=a.p, n_gen=a.n)


def run_tokenometer(model: Path, rpc: str, a: argparse.Namespace) -> tuple[dict[str, tuple[float, float]], list]:
    done = subprocess.run([sys.executable, "-m", "models.cli", "bench", str(model), "-p", str(a.p), "-n", str(a.n),
                           "-t", str(a.threads), "-r", str(a.reps), "-ngl", str(a.ngl), "--rpc", rpc, "-o", "json",
                           "--no-save"], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"tokenometer bench failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    rows = json.loads(done.stdout)
    return _rates(rows, n_prompt=a.p, n_gen=a.n), rows


def cell(value: tuple[float, float]) -> str:
    return f"{value[0]:9.2f} ± {value[1]:6.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-bench", type=Path, required=True)
    parser.add_argument("--rpc-server", type=Path, help="llama.cpp's rpc-server (default: tokenometer rpc-server)")
    parser.add_argument("--model", type=Path, help="GGUF (default: the starter model)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ngl", type=int, default=99)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("-p", type=int, default=128)
    parser.add_argument("-n", type=int, default=32)
    args = parser.parse_args()
    if args.model is None:
        from models.hub.starter import ensure_starter_model

        args.model = ensure_starter_model()
    procs, rpc = start_servers(args.servers, threads=args.threads, binary=args.rpc_server)
    try:
        print(f"servers: {rpc} ({'llama.cpp rpc-server' if args.rpc_server else 'tokenometer rpc-server'}), "
              f"-ngl {args.ngl}, -t {args.threads}, -r {args.reps}")
        ours: dict[str, list[float]] = {"pp": [], "tg": []}
        theirs: dict[str, list[float]] = {"pp": [], "tg": []}
        print(f"{'pair':>4} {'first':>11} | {'Tokenometer pp':>18} {'llama-bench pp':>18} | "
              f"{'Tokenometer tg':>18} {'llama-bench tg':>18}")
        topology = None
        for pair in range(1, args.pairs + 1):
            if pair % 2:
                lb = run_llama_bench(args.llama_bench, args.model, rpc, args)
                tk, rows = run_tokenometer(args.model, rpc, args)
            else:
                tk, rows = run_tokenometer(args.model, rpc, args)
                lb = run_llama_bench(args.llama_bench, args.model, rpc, args)
            topology = rows[0].get("topology")
            for test in ("pp", "tg"):
                ours[test].append(tk[test][0])
                theirs[test].append(lb[test][0])
            print(f"{pair:>4} {'llama-bench' if pair % 2 else 'Tokenometer':>11} | {cell(tk['pp']):>18} "
                  f"{cell(lb['pp']):>18} | {cell(tk['tg']):>18} {cell(lb['tg']):>18}", flush=True)
        for test, label in (("pp", f"pp{args.p}"), ("tg", f"tg{args.n}")):
            ratio = statistics.fmean(ours[test]) / statistics.fmean(theirs[test])
            per_pair = ", ".join(f"{a / b:.3f}" for a, b in zip(ours[test], theirs[test]))
            print(f"{label}: Tokenometer/llama-bench = {ratio:.3f} (pairs: {per_pair})")
        for endpoint in (topology or {}).get("endpoints", []):
            print(f"probe {endpoint['endpoint']}: RTT {endpoint['rtt_ms']:.3f} ms, upload {endpoint['upload_mb_s']:.0f} "
                  f"MB/s, download {endpoint['download_mb_s']:.0f} MB/s")
        # The hop: the same tests all local and split over the servers, alternately, in Tokenometer.
        hop: dict[str, dict[str, list[float]]] = {"none": {"pp": [], "tg": []}, rpc: {"pp": [], "tg": []}}
        for pair in range(args.pairs):
            for pool in (("none", rpc) if pair % 2 == 0 else (rpc, "none")):
                rates, _rows = run_tokenometer(args.model, pool, args)
                for test in ("pp", "tg"):
                    hop[pool][test].append(rates[test][0])
        for test, label in (("pp", f"pp{args.p}"), ("tg", f"tg{args.n}")):
            local, split = statistics.fmean(hop["none"][test]), statistics.fmean(hop[rpc][test])
            print(f"hop {label}: local {local:.2f} t/s, split over {args.servers} server(s) {split:.2f} t/s, "
                  f"split/local = {split / local:.3f}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
