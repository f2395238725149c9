"""CLI: tokenometer batched, llama-batched-bench's method and flags (parallel sequences decoded in one batch)."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from models.cli.engine_flags import add_engine_flags, comma_ints, engine_params
from models.errors import BenchmarkError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `tokenometer batched`."""
    from models.bench.capacity.batched_output import FORMATS

    parser = subparsers.add_parser(
        "batched", allow_abbrev=False,
        help="throughput with several sequences decoded together (llama-batched-bench's method and flags)",
        description="Measure what one model gives B people at once, as llama-batched-bench does: B prompts of "
                    "PP tokens (or one shared prompt, -pps), then TG steps that each decode one token for every "
                    "sequence. S_TG is the machine's total generation rate; S_TG / B is each person's. Every "
                    "comma list is swept as a cross product. With no model, the starter model is used.")
    parser.add_argument("model", nargs="?", metavar="MODEL", help="GGUF file (default: the starter model)")
    add = parser.add_argument
    add("-m", "--model", dest="model_flag", metavar="FILE", help="GGUF file, as llama-batched-bench's -m")
    add("-npp", type=comma_ints, default=(128,), metavar="N[,N]", help="prompt tokens per sequence (128)")
    add("-ntg", type=comma_ints, default=(128,), metavar="N[,N]", help="generated tokens per sequence (128)")
    add("-npl", type=comma_ints, default=(1, 2, 4, 8), metavar="B[,B]", help="parallel sequences (1,2,4,8)")
    add("-pps", action="store_true", help="one prompt shared by all sequences")
    add("-kvu", "--kv-unified", action="store_true", help="one KV buffer shared across the sequences")
    add("-c", "--ctx-size", type=int, default=0, metavar="N", help="context size (default: just enough)")
    add_engine_flags(parser)
    add("-o", "--output", choices=FORMATS, default="md", help="output format (md)")
    add("--progress", action="store_true", help="print progress to stderr")
    add("--no-save", dest="save", action="store_false",
        help="do not keep the sweep in the results store (by default it is saved)")
    parser.set_defaults(handler=run_batched)


def build_job(args: argparse.Namespace) -> Any:
    """The BenchJob with a batched plan that the flags describe."""
    from models.bench.capacity.batched import BatchedPlan
    from models.bench.spec import BenchJob

    path = args.model_flag or args.model
    if path:
        model = Path(path)
    else:
        from models.hub.starter import ensure_starter_model

        model = ensure_starter_model(status=lambda message: print(message, file=sys.stderr))
    plan = BatchedPlan(n_prompt=args.npp, n_gen=args.ntg, n_parallel=args.npl, pp_shared=args.pps,
                       kv_unified=args.kv_unified, n_ctx=args.ctx_size)
    problem = plan.problem()
    if problem:
        raise BenchmarkError(problem)
    return BenchJob(model_path=model, params=engine_params(args, model), tests=(), repetitions=1, batched=plan)


def run_batched(args: argparse.Namespace) -> int:
    """Run the sweep in a worker and print each row as it arrives; 0 ok, 1 failed, 130 cancelled."""
    from models.bench.capacity.batched_output import BatchedPrinter
    from models.bench.runner import BenchRunner
    from models.bench.spec import check_job
    from models.cli.jobs import run_cancellable

    job = build_job(args)
    problem = check_job(job)
    if problem:
        raise BenchmarkError(problem)
    printer = BatchedPrinter(args.output, sys.stdout)
    outcome: dict[str, Any] = {"failure": "", "skipped": []}

    def on_event(_job: Any, event: Any) -> None:
        if event.kind == "batched":
            data = event.data
            if data.get("row"):
                printer.row(data["row"])
            else:
                outcome["skipped"].append(data.get("test", ""))
        elif event.kind == "failure":
            outcome["failure"] = event.data.get("message", "")
        elif event.kind == "progress" and args.progress:
            print(f"tokenometer-batched: {event.data.get('test', '')} {event.data.get('phase', '')}",
                  file=sys.stderr, flush=True)

    recorder = None
    if args.save:
        from models.results.measurements import open_measurement_recorder

        recorder = open_measurement_recorder(kind="batched", target="llama.cpp", model_path=job.model_path,
                                             settings={"plan": job.batched.to_json(), "params": asdict(job.params)})

    def relay(job_: Any, event: Any) -> None:
        on_event(job_, event)
        if recorder is not None:
            recorder(job_, event)

    runner = BenchRunner(on_event=relay)
    cancelled = run_cancellable(lambda: runner.run([job]), cancel=runner.cancel)
    printer.finish()
    if recorder is not None and recorder.error is not None:
        print(f"warning: the sweep was not saved: {recorder.error}", file=sys.stderr)
    for test in outcome["skipped"]:
        print(f"skipped {test}: it needs more KV cells than the context holds (raise -c)", file=sys.stderr)
    if cancelled:
        return 130
    if outcome["failure"]:
        print(f"error: {outcome['failure']}", file=sys.stderr)
        return 1
    return 0
