"""GUI figures: the longest event-loop stall while a benchmark and a download run, startup time, and RSS.

Usage: .venv/bin/python benchmarks/gui_bench.py [--startup-runs 5] [--reps 3] [--throttle-mbps 20]

Stall: a 5 ms QTimer records the gaps between its ticks while the starter model is benchmarked (real worker)
and the same file downloads from the loopback Hub (throttled so both overlap), and the user switches pages.
Startup: `python -m desktop.launch` with TOKENOMETER_STARTUP_PROBE set prints the wall-clock time of the
window's first expose and quits; the figure is that time minus the moment before the process was spawned.
RSS: the GUI process's resident memory (the benchmark worker is a separate process and not counted).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STALL_GOAL_MS, STARTUP_GOAL_S, RSS_GOAL_MB = 50.0, 1.0, 200.0


def measure_startup(runs: int, home: Path) -> list[float]:
    """Seconds from just before spawning `python -m desktop.launch` to the window's first expose."""
    # Its own home and config folder: the runs must not move the user's window or read their results.
    env = dict(os.environ, TOKENOMETER_STARTUP_PROBE="1", TOKENOMETER_HOME=str(home / "startup"),
               XDG_CONFIG_HOME=str(home / "config"))
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    times = []
    for _ in range(runs):
        started = time.time()
        proc = subprocess.run([sys.executable, "-m", "desktop.launch"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
        shown = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("TOKENOMETER_WINDOW_SHOWN")]
        if not shown:
            raise SystemExit(f"the app printed no startup mark (exit {proc.returncode}): {proc.stderr[-800:]}")
        times.append(float(shown[0]) - started)
    return times


def serve(path: Path, throttle_bps: int) -> None:
    """Child-process mode: the loopback Hub serving one file (it reads the file into its own memory, which
    must not count as the GUI's), until stdin closes."""
    from tests.models.hub.hubserver import HubServer

    server = HubServer().start()
    server.faults.throttle_bps = throttle_bps or None
    server.add_repo("bench/SmolLM2-GGUF", {path.name: path})
    print(server.url, flush=True)
    sys.stdin.read()
    server.stop()


def measure_stall(home: Path, *, reps: int, throttle_bps: int, only: str = "", switch_pages: bool = True,
                  diagnose: bool = False, threads: int = 0) -> dict[str, float]:
    from models.hub.starter import ensure_starter_model

    starter = ensure_starter_model()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(starter), str(throttle_bps)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdin is not None
    url = server.stdout.readline().strip()
    # huggingface_hub reads these once, at import, which happens below.
    os.environ.update(HF_ENDPOINT=url, HF_HOME=str(home / "hf"), HF_HUB_CACHE=str(home / "hf" / "hub"),
                      TOKENOMETER_HOME=str(home / "stall"), HF_HUB_DISABLE_TELEMETRY="1",
                      NO_PROXY="127.0.0.1,localhost")
    os.environ.pop("HF_TOKEN", None)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    import psutil
    from PySide6.QtCore import QElapsedTimer, QSettings, QTimer

    from desktop.app import create_application
    from desktop.main_window import MainWindow
    from desktop.pages import PAGES
    from models.bench.spec import BenchSweep
    from models.hub.download import DownloadRequest, DownloadState
    from models.hub.repos import repo_files

    app = create_application()
    window = MainWindow(settings=QSettings(str(home / "gui.ini"), QSettings.Format.IniFormat), start_page="benchmark")
    window.show()
    build_ms = {}
    for info in PAGES:  # build every page first: their one-off construction is not what is measured here
        clock = time.perf_counter()
        window.show_page(info.name)
        app.processEvents()
        build_ms[info.name] = 1000 * (time.perf_counter() - clock)
    window.show_page("benchmark")

    repo = repo_files("bench/SmolLM2-GGUF")
    download = window.ctx.downloads().add(DownloadRequest(repo.repo_id, repo.models[0].files, revision=repo.commit)) \
        if only != "bench" else None
    sweep = BenchSweep(models=[starter], n_prompt=[128], n_gen=[32], repetitions=reps)
    if threads:
        sweep.n_threads = [threads]
    items = window.ctx.bench.enqueue(sweep.jobs()) if only != "download" else []
    process = psutil.Process()
    gaps: list[float] = []
    state = {"rss": 0, "page": 0}
    elapsed = QElapsedTimer()
    elapsed.start()
    last = [elapsed.nsecsElapsed()]

    def tick() -> None:
        now = elapsed.nsecsElapsed()
        gaps.append((now - last[0]) / 1e6)
        last[0] = now

    def sample() -> None:
        state["rss"] = max(state["rss"], process.memory_info().rss)

    def switch() -> None:  # a user looking around while both run
        state["page"] = (state["page"] + 1) % len(PAGES)
        window.show_page(PAGES[state["page"]].name)

    stalls: dict[str, int] = {}
    if diagnose:
        import threading
        import traceback

        gui_thread = threading.get_ident()

        def watchdog() -> None:
            # Where the GUI thread is when it has not ticked for 30 ms: the stack names the slow code.
            while not state.get("stop"):
                time.sleep(0.01)
                if (elapsed.nsecsElapsed() - last[0]) / 1e6 > 30:
                    names = {t.ident: t.name for t in threading.enumerate()}
                    for ident, frame in sys._current_frames().items():
                        if ident == threading.get_ident():
                            continue
                        where = f"[{'GUI' if ident == gui_thread else names.get(ident, ident)}] " + " <- ".join(
                            f"{Path(f.filename).name}:{f.lineno} {f.name}"
                            for f in reversed(traceback.extract_stack(frame)[-4:]))
                        stalls[where] = stalls.get(where, 0) + 1
                    time.sleep(0.03)

        threading.Thread(target=watchdog, daemon=True).start()
    gc_pauses: list[float] = []
    if diagnose:
        import gc

        gc_start: dict[str, float] = {}

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_start["t"] = time.perf_counter()
            elif "t" in gc_start:
                gc_pauses.append((1000 * (time.perf_counter() - gc_start.pop("t")), info.get("generation", -1)))

        gc.callbacks.append(on_gc)
    timers = []
    for interval, slot in ((5, tick), (100, sample), (700, switch))[: 3 if switch_pages else 2]:
        timer = QTimer()
        timer.setInterval(interval)
        timer.timeout.connect(slot)
        timer.start()
        timers.append(timer)
    started = time.perf_counter()
    overlap = {"both": 0.0}
    while time.perf_counter() - started < 600:
        app.processEvents()
        time.sleep(0.001)
        running_bench = any(item.state in ("queued", "running") for item in items)
        running_download = download is not None and download.state in (
            DownloadState.QUEUED, DownloadState.RUNNING, DownloadState.VERIFYING)
        if running_bench and running_download and not overlap["both"]:
            overlap["both"] = time.perf_counter()
        if not running_bench and not running_download:
            break
    duration = time.perf_counter() - started
    for timer in timers:
        timer.stop()
    state["stop"] = 1
    if gc_pauses:
        worst = sorted(gc_pauses, reverse=True)[:5]
        print(f"garbage collections: {len(gc_pauses)}, longest (ms, generation): "
              + ", ".join(f"{ms:.1f} (gen {gen})" for ms, gen in worst))
    for where, count in sorted(stalls.items(), key=lambda kv: -kv[1])[:8]:
        print(f"stalled {count}x in: {where}")
    sample()
    window.close()
    server.stdin.close()
    server.wait(10)
    if any(item.state != "done" for item in items) or (download is not None and download.state != DownloadState.DONE):
        raise SystemExit(f"the run did not finish cleanly: benchmark {[(i.state, i.message) for i in items]}, "
                         f"download {download.state if download else '-'} {download.error if download else ''!r}")
    ordered = sorted(gaps[1:])
    return {"max_ms": ordered[-1], "p99_ms": ordered[int(0.99 * (len(ordered) - 1))],
            "median_ms": statistics.median(ordered), "over_50ms": sum(1 for g in ordered if g > 50),
            "ticks": len(ordered), "seconds": duration, "rss_mb": state["rss"] / 2**20,
            "slowest_page_build_ms": max(build_ms.values()), "slowest_page": max(build_ms, key=build_ms.get)}


def main() -> int:
    if sys.argv[1:2] == ["--serve"]:
        serve(Path(sys.argv[2]), int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3, help="benchmark repetitions (longer = more overlap)")
    parser.add_argument("--throttle-mbps", type=float, default=8.0, help="loopback download speed, MB/s")
    parser.add_argument("--only", choices=("bench", "download"), default="",
                        help="run only one of the two (to tell where a stall or memory comes from)")
    parser.add_argument("--no-switch", action="store_true", help="do not switch pages while measuring")
    parser.add_argument("--threads", type=int, default=0,
                        help="benchmark threads (default: physical cores, as llama-bench)")
    parser.add_argument("--diagnose", action="store_true", help="print where the GUI thread was during stalls")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokenometer-gui-bench-") as tmp:
        home = Path(tmp)
        startup = measure_startup(args.startup_runs, home)
        stall = measure_stall(home, reps=args.reps, throttle_bps=int(args.throttle_mbps * 1e6), only=args.only,
                              switch_pages=not args.no_switch, diagnose=args.diagnose, threads=args.threads)
    best, median = min(startup), statistics.median(startup)
    print(f"startup to window shown: median {median:.3f} s, best {best:.3f} s over {len(startup)} runs "
          f"(goal < {STARTUP_GOAL_S:.0f} s) {'OK' if median < STARTUP_GOAL_S else 'MISSED'}")
    print(f"event-loop stall during benchmark + download ({stall['seconds']:.0f} s, {stall['ticks']} ticks of 5 ms): "
          f"longest {stall['max_ms']:.1f} ms, p99 {stall['p99_ms']:.1f} ms, median {stall['median_ms']:.1f} ms, "
          f"{stall['over_50ms']} gaps over 50 ms (goal < {STALL_GOAL_MS:.0f} ms) "
          f"{'OK' if stall['max_ms'] < STALL_GOAL_MS else 'MISSED'}")
    print(f"GUI process RSS, peak: {stall['rss_mb']:.0f} MB (goal < {RSS_GOAL_MB:.0f} MB) "
          f"{'OK' if stall['rss_mb'] < RSS_GOAL_MB else 'MISSED'}")
    print(f"benchmark threads: {args.threads or 'physical cores'}; CPUs here: {os.cpu_count()}; "
          f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"slowest first page build (before measuring): {stall['slowest_page']} "
          f"{stall['slowest_page_build_ms']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
