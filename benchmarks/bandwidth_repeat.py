"""Repeatability of the CPU bandwidth test: K runs of the former and the current method, interleaved, side by side.

  python benchmarks/bandwidth_repeat.py [-k 10] [-t THREADS] [--burn N]

Each round runs the former method (one 512 MiB pass set: 10 passes after one warm-up pass, timed by the main
thread around the barriers, as committed in bdf8594) and then the current one (models.machine.bandwidth), so
both see the same machine. Per run it prints the best read and copy and the CPU time other processes of this
machine used meanwhile (in cores): a slow run with none is the memory itself (a virtual machine's neighbours).
--burn N starts N processes that burn a core in random bursts (5-200 ms on, 5-200 ms off), as other tests do.
--windows W then times W more 1.5 s windows of read passes on one set of buffers (no new allocation between
them): what is left of the spread there is the machine's memory itself changing over time, not the method.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.machine.bandwidth import measure_cpu_bandwidth  # noqa: E402

MIB = 1024 * 1024


def former_method(threads: int, buffer_bytes: int = 512 * MIB, repeats: int = 10) -> tuple[float, float]:
    """The method as it was: best of `repeats` passes after one warm-up, timed around the barriers."""
    import numpy as np

    words = buffer_bytes // threads // 8
    blocks: list[Any] = [None] * threads
    copies: list[Any] = [None] * threads
    barrier = threading.Barrier(threads + 1)
    mode = ["read"]

    def work(i: int) -> None:
        blocks[i] = np.ones(words, dtype=np.int64)
        copies[i] = np.zeros(words, dtype=np.int64)
        barrier.wait()
        while True:
            barrier.wait()
            if mode[0] == "stop":
                return
            if mode[0] == "read":
                np.add.reduce(blocks[i])
            else:
                np.copyto(copies[i], blocks[i])
            barrier.wait()

    pool = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()

    def timed(kind: str) -> float:
        mode[0] = kind
        t0 = time.perf_counter()
        barrier.wait()
        barrier.wait()
        return time.perf_counter() - t0

    total = words * 8 * threads
    timed("read")
    timed("copy")
    reads, copies_ = [], []
    for _ in range(repeats):
        reads.append(total / timed("read"))
        copies_.append(2 * total / timed("copy"))
    mode[0] = "stop"
    barrier.wait()
    for thread in pool:
        thread.join()
    return max(reads), max(copies_)


def same_buffer_windows(threads: int, windows: int, *, buffer_bytes: int = 256 * MIB,
                        seconds: float = 1.5) -> list[float]:
    """The best read pass of each of `windows` windows, all on the same blocks (timed as the current method)."""
    import numpy as np

    words = buffer_bytes // threads // 8
    blocks: list[Any] = [None] * threads
    began, ended = [0.0] * threads, [0.0] * threads
    barrier = threading.Barrier(threads + 1)
    stop = [False]

    def work(i: int) -> None:
        blocks[i] = np.ones(words, dtype=np.int64)
        barrier.wait()
        while True:
            barrier.wait()
            if stop[0]:
                return
            began[i] = time.perf_counter()
            np.add.reduce(blocks[i])
            ended[i] = time.perf_counter()
            barrier.wait()

    pool = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()

    def timed() -> float:
        barrier.wait()
        barrier.wait()
        return max(ended) - min(began)

    for _ in range(5):
        timed()
    total = words * 8 * threads
    out = []
    for _ in range(windows):
        t0, best = time.perf_counter(), 0.0
        while time.perf_counter() - t0 < seconds:
            best = max(best, total / timed())
        out.append(best)
    stop[0] = True
    barrier.wait()
    for thread in pool:
        thread.join()
    return out


def _busy_seconds() -> float:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def _burn(stop: Any) -> None:
    rng = random.Random(os.getpid())
    while not stop.is_set():
        until = time.perf_counter() + rng.uniform(0.005, 0.2)
        while time.perf_counter() < until:
            pass
        time.sleep(rng.uniform(0.005, 0.2))


def _timed_run(fn: Any) -> tuple[float, float, float, float]:
    busy, own, t0 = _busy_seconds(), time.process_time(), time.perf_counter()
    read, copy = fn()
    wall = time.perf_counter() - t0
    others = max((_busy_seconds() - busy) - (time.process_time() - own), 0.0) / wall
    return read, copy, wall, others


def _summary(name: str, runs: list[tuple[float, float, float, float]]) -> str:
    out = []
    for label, i in (("read", 0), ("copy", 1)):
        v = [r[i] / 1e9 for r in runs]
        med = statistics.median(v)
        out.append(f"{label} min/median/max {min(v):5.1f}/{med:5.1f}/{max(v):5.1f} GB/s, spread "
                   f"(max-min)/median {(max(v) - min(v)) / med:5.1%} (±{(max(v) - min(v)) / 2 / med:4.1%})")
    return f"{name:8s} " + "; ".join(out) + f"; {statistics.fmean(r[2] for r in runs):.2f} s a run"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", type=int, default=10, help="runs of each method")
    parser.add_argument("-t", "--threads", type=int, default=None, help="default: the physical cores")
    parser.add_argument("--burn", type=int, default=0, help="processes burning a core in random bursts")
    parser.add_argument("--windows", type=int, default=0, help="then W windows on one set of buffers")
    args = parser.parse_args()
    import psutil

    threads = args.threads or psutil.cpu_count(logical=False) or 1
    stop = mp.Event()
    burners = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(args.burn)]
    for burner in burners:
        burner.start()
    former: list[tuple[float, float, float, float]] = []
    current: list[tuple[float, float, float, float]] = []
    print(f"{threads} threads, {args.burn} burning processes; per round: former then current "
          "(read, copy GB/s; other processes' CPU in cores; current: passes and halves gap)")
    try:
        for k in range(args.k):
            former.append(_timed_run(lambda: former_method(threads)))
            detail: list[Any] = []

            def now() -> tuple[float, float]:
                r = measure_cpu_bandwidth(threads=threads)
                detail.append(r)
                return r.read, r.copy

            current.append(_timed_run(now))
            f, c, d = former[-1], current[-1], detail[0]
            print(f"round {k:2d}: former {f[0] / 1e9:5.1f} {f[1] / 1e9:5.1f} (others {f[3]:.2f})   current "
                  f"{c[0] / 1e9:5.1f} {c[1] / 1e9:5.1f} (others {c[3]:.2f}; {d.repeats} passes of "
                  f"{d.buffer_bytes // MIB} MiB, halves gap {d.halves_gap:.1%})", flush=True)
        if args.windows:
            best = [b / 1e9 for b in same_buffer_windows(threads, args.windows)]
            med = statistics.median(best)
            print(f"same buffers, {args.windows} windows of 1.5 s: " + " ".join(f"{b:.1f}" for b in best)
                  + f" GB/s read; min/median/max {min(best):.1f}/{med:.1f}/{max(best):.1f}, "
                  f"(max-min)/median {(max(best) - min(best)) / med:.1%}")
    finally:
        stop.set()
        for burner in burners:
            burner.join()
    print(_summary("former", former))
    print(_summary("current", current))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
