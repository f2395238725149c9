"""CLI: tokenometer bench, with llama-bench's flags and comma lists."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any

from models.cli.jobs import run_cancellable
from models.cli.engine_flags import comma_ints
from models.errors import BenchmarkError
from models.text import printable

log = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_CANCELLED = 130


def _strs(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _bools(text: str) -> list[bool]:
    table = {"0": False, "1": True, "off": False, "on": True, "false": False, "true": True}
    try:
        return [table[part.strip().lower()] for part in text.split(",") if part.strip()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of 0/1, got {text!r}") from None


def _repetitions(text: str) -> int | str:
    """-r N as llama-bench takes it, or -r auto (adaptive repetitions)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of repetitions or auto, got {text!r}") from None


def _flash(text: str) -> list[str]:
    table = {"on": "on", "1": "on", "off": "off", "0": "off", "auto": "auto", "-1": "auto"}
    try:
        return [table[part.strip().lower()] for part in text.split(",") if part.strip()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected on, off or auto (comma-separated), got {text!r}") from None


def _split_modes(text: str) -> list[str]:
    modes = [part.lower() for part in _strs(text)]
    for mode in modes:
        if mode not in ("none", "layer", "row", "tensor"):
            raise argparse.ArgumentTypeError(f"split mode must be none, layer, row or tensor, got {mode!r}")
    return modes


def _tensor_splits(text: str) -> list[tuple[float, ...]]:
    """llama-bench's -ts: comma-separated splits, each a share per GPU joined by "/" (or ";")."""
    out = []
    for split in _strs(text):
        try:
            out.append(tuple(float(x) for x in split.replace(";", "/").split("/") if x.strip()))
        except ValueError:
            raise argparse.ArgumentTypeError(f"-ts takes shares like 3/1 (comma-separated), got {split!r}") from None
    return out


def _pair(text: str) -> tuple[int, int]:
    values = comma_ints(text)
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
    add("-p", "--n-prompt", action="append", type=comma_ints, metavar="N[,N]", help="prompt sizes (default 512)")
    add("-n", "--n-gen", action="append", type=comma_ints, metavar="N[,N]", help="generation sizes (default 128)")
    add("-pg", action="append", type=_pair, metavar="PP,TG", help="a combined prompt+generation test")
    add("-d", "--n-depth", action="append", type=comma_ints, metavar="N[,N]", help="context depth before the test (0)")
    add("-t", "--threads", action="append", type=comma_ints, metavar="N[,N]",
        help="threads (default: llama.cpp's math cores: physical cores, performance cores only on hybrid CPUs)")
    add("-C", "--cpu-mask", action="append", type=_strs, metavar="HEX[,HEX]",
        help="CPUs the threadpool may use, a hex mask (default 0x0: no pinning)")
    add("--cpu-strict", action="append", type=_bools, metavar="0|1", help="one thread per CPU of the mask (0)")
    add("--poll", action="append", type=comma_ints, metavar="0..100", help="threadpool polling level (50)")
    add("-ngl", "--n-gpu-layers", action="append", type=comma_ints, metavar="N[,N]",
        help="layers on the GPU (default -1: every layer and the output)")
    add("-sm", "--split-mode", action="append", type=_split_modes, metavar="none|layer|row|tensor",
        help="how to split the model across GPUs (layer)")
    add("-mg", "--main-gpu", action="append", type=comma_ints, metavar="I[,I]", help="the GPU for split mode none (0)")
    add("-ts", "--tensor-split", action="append", type=_tensor_splits, metavar="T0/T1/..",
        help="share of the model per GPU (default: llama.cpp decides)")
    add("-nkvo", "--no-kv-offload", action="append", type=_bools, metavar="0|1",
        help="keep the KV cache in host memory (0)")
    add("-rpc", "--rpc", action="append", metavar="HOST:PORT[,HOST:PORT]",
        help="RPC servers whose devices join this machine's (llama-bench's -rpc; see tokenometer rpc-server); "
             "repeat to compare pools, 'none' for this machine alone")
    add("-b", "--batch-size", action="append", type=comma_ints, metavar="N[,N]", help="n_batch (2048)")
    add("-ub", "--ubatch-size", action="append", type=comma_ints, metavar="N[,N]", help="n_ubatch (512)")
    add("-fa", "--flash-attn", action="append", type=_flash, metavar="on|off|auto", help="flash attention (auto)")
    add("-ctk", "--cache-type-k", action="append", type=_strs, metavar="TYPE", help="K cache type (f16)")
    add("-ctv", "--cache-type-v", action="append", type=_strs, metavar="TYPE", help="V cache type (f16)")
    add("-mmp", "--mmap", action="append", type=_bools, metavar="0|1",
        help="1: map the model file, 0: read it into memory (default: llama-bench's load mode auto, which maps "
             "unless a device cannot)")
    add("-r", "--repetitions", type=_repetitions, default=None, metavar="N|auto",
        help="repetitions per test (5); auto: repeat until the 95%% confidence interval of the mean is within "
             "±2%% (at least 3, at most 30 repetitions or 60 s per test)")
    add("--localscore", action="store_true",
        help="run LocalScore's nine tests with its settings (models.bench.localscore) instead of -p/-n/-pg/-d and "
             "print its score, comparable with localscore.ai's results for the same model file")
    add("--ttft", type=int, default=0, metavar="N",
        help="also measure time to first token: a real N-token chat prompt (the model's template) prefilled and "
             "its first token sampled; not LocalScore's TTFT (random-token prefill plus one decode)")
    add("--numa", choices=("distribute", "isolate", "numactl"), default=None, help="NUMA mode (default: disabled)")
    add("--prio", type=int, choices=(-1, 0, 1, 2, 3), default=0, metavar="-1|0|1|2|3",
        help="process and thread priority: low, normal, medium, high, realtime (0)")
    add("--delay", type=int, default=0, metavar="SECONDS", help="rest before each test (0)")
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
             "use_mmap": args.mmap, "cpu_mask": args.cpu_mask, "cpu_strict": args.cpu_strict, "poll": args.poll,
             "split_mode": args.split_mode, "main_gpu": args.main_gpu, "tensor_split": args.tensor_split,
             "no_kv_offload": args.no_kv_offload}
    for name, lists in pairs.items():
        values = _flatten(lists)
        if values is not None:
            setattr(sweep, name, values)
    if args.rpc:
        sweep.rpc = ["" if value.strip().lower() == "none" else value.strip() for value in args.rpc]
    if args.pg:
        sweep.n_pg = list(args.pg)
    if args.repetitions == "auto":
        from models.bench.trust.adaptive import AdaptivePlan

        sweep.adaptive = AdaptivePlan()
    elif args.repetitions is not None:
        sweep.repetitions = args.repetitions
    if args.ttft < 0:
        raise BenchmarkError(f"--ttft must be at least 0, got {args.ttft}.")
    sweep.ttft_prompt_tokens = args.ttft
    sweep.numa = args.numa or "disabled"
    sweep.prio = args.prio
    sweep.delay = args.delay
    return sweep


def _saving(on_event: Callable[[Any, Any], None], recovery: Any) -> Callable[[Any, Any], None]:
    """Wrap on_event so each result is printed, then committed to the results store as it arrives (as the app
    does). A store that stays locked past its busy timeout, is full or read-only does not lose the result:
    it goes to the recovery file, and the command ends non-zero saying where."""
    from models.results.recorder import open_recorder

    def keep(record: Any, error: Any) -> None:
        if not recovery.records:
            print(f"warning: {printable(str(error))}; keeping results in a recovery file", file=sys.stderr)
        recovery.keep(record, error)

    # The store stays open until the command exits: every result is committed as it arrives.
    record, _close = open_recorder(on_save_error=keep)

    def print_then_save(job: Any, event: Any) -> None:
        try:
            on_event(job, event)  # first: a row on screen is never held back by a busy store
        finally:
            record(job, event)

    return print_then_save


def run_bench(args: argparse.Namespace) -> int:
    """Run the sweep, print rows as they finish; 0 when all ran, 1 if any failed, 130 when cancelled."""
    from models.bench.output import make_printer, sweep_values
    from models.bench.runner import BenchRunner

    sweep = build_sweep(args)
    jobs = sweep.jobs()  # validates; a BenchmarkError becomes "error: ..." and exit code 1
    if getattr(args, "localscore", False):
        from models.bench.localscore import localscore_jobs

        jobs = localscore_jobs(jobs, repetitions=args.repetitions if isinstance(args.repetitions, int) else None)
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
                printer = make_printer(args.output, sys.stdout, values=sweep_values(sweep),
                                       cpu_backend=any(b in backends for b in ("CPU", "BLAS", "ZenDNN")))
                printer.header()
                state["printer"] = printer
            state["printer"].row(result)
            state["results"].append(result)
        elif event.kind == "progress" and args.progress:
            name = printable(job.model_path.name)  # a file name can hold escape codes
            # The same words as the GUI's queue: models.bench.events.progress_text.
            print(f"{where}: {name} {printable(event.typed.text)}", file=sys.stderr, flush=True)
        elif event.kind == "failure" and args.progress:
            print(f"{where}: failed: {printable(event.data.get('message'), newlines=True)}", file=sys.stderr,
                  flush=True)
        elif event.kind == "log" and verbose:
            print(f"[worker] {printable(event.data.get('message'), newlines=True)}", file=sys.stderr)

    from models.results.recovery import RecoveryFile

    recovery = RecoveryFile()
    runner = BenchRunner(on_event=_saving(on_event, recovery) if args.save else on_event)
    outcome: dict[str, Any] = {}

    def work() -> None:
        outcome["results"] = runner.run(jobs)

    with _signals_cancel() as received:
        # Ctrl-C (and SIGTERM/SIGHUP, raised as one) cancels the worker; what finished is still printed.
        cancelled = run_cancellable(work, cancel=runner.cancel, name="tokenometer-bench")
    results = outcome.get("results", state["results"])
    if state["printer"] is not None:
        state["printer"].footer(results)
    if getattr(args, "localscore", False):
        from models.bench.localscore import score_lines

        # Beside a machine-readable output the score goes to stderr, so the output stays parseable.
        for line in score_lines(results):
            print(line, file=sys.stdout if args.output == "md" else sys.stderr)
    if recovery.records:
        print(f"error: {printable(recovery.summary())}", file=sys.stderr)
    if received:  # SIGTERM/SIGHUP: the shell's convention, 128 + the signal
        return 128 + received[0]
    if cancelled or any(r.status == "cancelled" for r in results):
        return EXIT_CANCELLED
    return EXIT_FAILED if recovery.records or any(r.status != "ok" for r in results) else 0


class _CancelSignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled as Ctrl-C is: cancel the worker, print what finished."""


@contextlib.contextmanager
def _signals_cancel() -> Iterator[list[int]]:
    """While benchmarking, SIGTERM and SIGHUP cancel like Ctrl-C (else the worker would be left running);
    the list gets the signal's number."""
    received: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        received.append(signum)
        raise _CancelSignal()

    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in wanted:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
