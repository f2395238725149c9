"""CLI: tokenometer bench, with llama-bench's flags and comma lists."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from models.errors import BenchmarkError
from models.text import printable

log = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_CANCELLED = 130


def _ints(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _strs(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _bools(text: str) -> list[bool]:
    table = {"0": False, "1": True, "off": False, "on": True, "false": False, "true": True}
    try:
        return [table[part.strip().lower()] for part in text.split(",") if part.strip()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of 0/1, got {text!r}") from None


def _flash(text: str) -> list[str]:
    table = {"on": "on", "1": "on", "off": "off", "0": "off", "auto": "auto", "-1": "auto"}
    try:
        return [table[part.strip().lower()] for part in text.split(",") if part.strip()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected on, off or auto (comma-separated), got {text!r}") from None


def _pair(text: str) -> tuple[int, int]:
    values = _ints(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"-pg takes PROMPT,GEN (e.g. 512,128), got {text!r}")
    return values[0], values[1]


def _flatten(lists: list[list[Any]] | None) -> list[Any] | None:
    return None if not lists else [value for values in lists for value in values]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's subcommands (each sets `handler`)."""
    parser = subparsers.add_parser(
        "bench", allow_abbrev=False, help="benchmark GGUF models with llama.cpp (llama-bench's method and flags)",
        description="Benchmark models like llama-bench: every comma list is swept as a cross product. "
                    "With no model, the bundled starter model (SmolLM2-135M-Instruct Q4_1) is used.")
    parser.add_argument("models", nargs="*", metavar="MODEL", help="GGUF files (default: the starter model)")
    parser.add_argument("-m", "--model", dest="model_flags", action="append", type=_strs, metavar="FILE[,FILE]",
                        help="GGUF files, as llama-bench's -m")
    add = parser.add_argument
    add("-p", "--n-prompt", action="append", type=_ints, metavar="N[,N]", help="prompt sizes (default 512)")
    add("-n", "--n-gen", action="append", type=_ints, metavar="N[,N]", help="generation sizes (default 128)")
    add("-pg", action="append", type=_pair, metavar="PP,TG", help="a combined prompt+generation test")
    add("-d", "--n-depth", action="append", type=_ints, metavar="N[,N]", help="context depth before the test (0)")
    add("-t", "--threads", action="append", type=_ints, metavar="N[,N]", help="threads (default: physical cores)")
    add("-ngl", "--n-gpu-layers", action="append", type=_ints, metavar="N[,N]", help="layers on the GPU (99)")
    add("-b", "--batch-size", action="append", type=_ints, metavar="N[,N]", help="n_batch (2048)")
    add("-ub", "--ubatch-size", action="append", type=_ints, metavar="N[,N]", help="n_ubatch (512)")
    add("-fa", "--flash-attn", action="append", type=_flash, metavar="on|off|auto", help="flash attention (auto)")
    add("-ctk", "--cache-type-k", action="append", type=_strs, metavar="TYPE", help="K cache type (f16)")
    add("-ctv", "--cache-type-v", action="append", type=_strs, metavar="TYPE", help="V cache type (f16)")
    add("-mmp", "--mmap", action="append", type=_bools, metavar="0|1", help="map the model file (1)")
    add("-r", "--repetitions", type=int, default=None, metavar="N", help="repetitions per test (5)")
    add("--ttft", type=int, default=0, metavar="N", help="also time the first token of an N-token chat prompt")
    add("-o", "--output", choices=("md", "csv", "json", "jsonl", "sql"), default="md", help="output format (md)")
    add("--progress", action="store_true", help="print progress to stderr")
    add("--no-save", dest="save", action="store_false",
        help="do not keep the results in the results store (by default every run is saved)")
    parser.set_defaults(handler=run_bench)


def build_sweep(args: argparse.Namespace) -> Any:
    """The BenchSweep the flags describe (the starter model when none is given)."""
    from models.bench.spec import BenchSweep

    models = [Path(m) for m in args.models] + [Path(m) for m in (_flatten(args.model_flags) or [])]
    if not models:
        from models.hub.starter import ensure_starter_model

        models = [ensure_starter_model(status=lambda message: print(message, file=sys.stderr))]
    sweep = BenchSweep(models=models)
    pairs = {"n_prompt": args.n_prompt, "n_gen": args.n_gen, "n_depth": args.n_depth, "n_threads": args.threads,
             "n_gpu_layers": args.n_gpu_layers, "n_batch": args.batch_size, "n_ubatch": args.ubatch_size,
             "flash_attn": args.flash_attn, "type_k": args.cache_type_k, "type_v": args.cache_type_v,
             "use_mmap": args.mmap}
    for name, lists in pairs.items():
        values = _flatten(lists)
        if values is not None:
            setattr(sweep, name, values)
    if args.pg:
        sweep.n_pg = list(args.pg)
    if args.repetitions is not None:
        sweep.repetitions = args.repetitions
    if args.ttft < 0:
        raise BenchmarkError(f"--ttft must be at least 0, got {args.ttft}.")
    sweep.ttft_prompt_tokens = args.ttft
    return sweep


def _saving(on_event: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """Wrap on_event so each result is committed to the results store as it arrives (as the app does)."""
    from models.machine.energy import EnergyMeter
    from models.errors import StoreError
    from models.machine.hardware import machine_fingerprint
    from models.results.store import ResultsStore, record_events
    from models.settings import load_settings

    try:
        store = ResultsStore()
    except StoreError as error:  # the numbers still matter more than keeping them
        print(f"warning: results will not be saved: {error}", file=sys.stderr)
        return on_event
    watts = load_settings().system_power_watts or None
    meter = EnergyMeter(fallback_watts=watts)
    return record_events(store, machine=machine_fingerprint(), energy_meter=meter if meter.available else None,
                         then=on_event)


def run_bench(args: argparse.Namespace) -> int:
    """Run the sweep, print rows as they finish; 0 when all ran, 1 if any failed, 130 when cancelled."""
    from models.bench.output import make_printer, sweep_values
    from models.bench.runner import BenchRunner

    sweep = build_sweep(args)
    jobs = sweep.jobs()  # validates; a BenchmarkError becomes "error: ..." and exit code 1
    index = {id(job): number for number, job in enumerate(jobs, 1)}
    state: dict[str, Any] = {"printer": None, "results": []}
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)

    def on_event(job: Any, event: Any) -> None:
        where = f"tokenometer-bench: job {index.get(id(job), 0)}/{len(jobs)}"
        if event.kind == "result":
            from models.bench.spec import BenchResult

            result = BenchResult.from_json(event.data["result"])
            if state["printer"] is None:
                backends = result.backends or "CPU"
                state["printer"] = make_printer(args.output, sys.stdout, values=sweep_values(sweep),
                                                cpu_backend=any(b in backends for b in ("CPU", "BLAS", "ZenDNN")))
                state["printer"].header()
            state["printer"].row(result)
            state["results"].append(result)
        elif event.kind == "progress" and args.progress:
            d = event.data
            step = f" {d.get('rep', 0) + 1}/{d.get('of', 0)}" if d.get("phase") in ("rep", "depth", "ttft") else ""
            name = printable(job.model_path.name)  # a file name can hold escape codes
            print(f"{where}: {name} {d.get('test') or ''} {d.get('phase')}{step}".replace("  ", " "),
                  file=sys.stderr, flush=True)
        elif event.kind == "failure" and args.progress:
            print(f"{where}: failed: {printable(event.data.get('message'), newlines=True)}", file=sys.stderr,
                  flush=True)
        elif event.kind == "log" and verbose:
            print(f"[worker] {printable(event.data.get('message'), newlines=True)}", file=sys.stderr)

    runner = BenchRunner(on_event=_saving(on_event) if args.save else on_event)
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            outcome["results"] = runner.run(jobs)
        except BaseException as error:  # re-raised on the main thread
            outcome["error"] = error
        finally:
            done.set()

    thread = threading.Thread(target=work, name="tokenometer-bench", daemon=True)
    thread.start()
    cancelled = False
    while not done.is_set():
        try:
            # A sleep, not thread.join: Ctrl-C during join can mark a running thread as finished.
            time.sleep(0.1)
        except KeyboardInterrupt:
            # Ctrl-C: stop the worker cleanly and still print what finished.
            cancelled = True
            print("\ncancelling ...", file=sys.stderr, flush=True)
            runner.cancel()
    if "error" in outcome:
        raise outcome["error"]
    results = outcome.get("results", state["results"])
    if state["printer"] is not None:
        state["printer"].footer(results)
    if cancelled or any(r.status == "cancelled" for r in results):
        return EXIT_CANCELLED
    return EXIT_FAILED if any(r.status != "ok" for r in results) else 0
