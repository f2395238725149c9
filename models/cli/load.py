"""CLI: tokenometer load, a serving load test in llama.cpp (continuous batching) or against a running server."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from models.cli.engine_flags import add_engine_flags, comma_ints, engine_params
from models.errors import BenchmarkError

log = logging.getLogger(__name__)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _seconds(text: str) -> float:
    """2s, 1.5 s, 100ms or a plain number of seconds."""
    value = text.strip().lower().replace(" ", "")
    try:
        if value.endswith("ms"):
            return float(value[:-2]) / 1000.0
        return float(value[:-1] if value.endswith("s") else value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration such as 2s or 100ms, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `tokenometer load`."""
    from models.bench.capacity.load_output import FORMATS
    from models.bench.capacity.profile import PROFILES

    parser = subparsers.add_parser(
        "load", allow_abbrev=False,
        help="how many people can this machine serve: a load test with latency targets",
        description="Serve many requests at once and measure what each person gets (vLLM's serving metrics: "
                    "TTFT, TPOT, ITL, end-to-end latency, throughput, goodput). In llama.cpp here by default, with "
                    "continuous batching like llama-server's slots; or against any OpenAI-compatible server that "
                    "streams (--endpoint). Levels rise until the SLO is missed; the answer is the largest load "
                    "that met it. Profiles: " + "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values()))
    parser.add_argument("model", nargs="?", metavar="MODEL", help="GGUF file (default: the starter model)")
    add = parser.add_argument
    add("--endpoint", metavar="URL", help="load a running server instead (e.g. http://127.0.0.1:8080)")
    add("--api", choices=("completions", "chat"), default="completions", help="endpoint API (completions)")
    add("--server-model", default="", metavar="NAME", help="model name to send to the endpoint")
    add("--api-key-env", default="", metavar="VAR", help="environment variable holding the endpoint's API key")
    add("--concurrency", type=comma_ints, default=(1, 2, 4, 8), metavar="N[,N]", help="people at once (1,2,4,8)")
    add("--rate", type=_floats, default=(), metavar="R[,R]", help="requests per second instead (Poisson arrivals)")
    add("--slots", type=int, default=0, metavar="N", help="with --rate: requests served at once (largest concurrency)")
    add("--requests", type=int, default=0, metavar="N", help="requests per level (4 per person, at least 8)")
    add("--profile", default="chat", metavar="NAME|FILE", help="request lengths: a profile or a CSV/JSONL file")
    add("--slo-ttft", type=_seconds, default=2.0, metavar="T", help="time-to-first-token limit (2s)")
    add("--slo-tpot", type=_seconds, default=0.1, metavar="T", help="time per output token limit (100ms)")
    add("--slo-percentile", type=float, default=90.0, metavar="P", help="percentile the limits apply to (90)")
    add("--all-levels", action="store_true", help="run every level even after the SLO is missed")
    add_engine_flags(parser)
    add("-o", "--output", choices=FORMATS, default="md", help="output format (md)")
    add("--progress", action="store_true", help="print progress to stderr")
    add("--no-save", dest="save", action="store_false",
        help="do not keep the load test in the results store (by default it is saved)")
    parser.set_defaults(handler=run_load)


def build_plan(args: argparse.Namespace) -> Any:
    from models.bench.capacity.sweep import LoadPlan
    from models.bench.capacity.serving import Slo

    plan = LoadPlan(profile=args.profile, concurrency=args.concurrency, rates=args.rate, slots=args.slots,
                    requests=args.requests, stop_early=not args.all_levels,
                    slo=Slo(ttft=args.slo_ttft, tpot=args.slo_tpot, percentile=args.slo_percentile))
    problem = plan.problem()
    if problem:
        raise BenchmarkError(problem)
    return plan


def _model(args: argparse.Namespace) -> Path:
    if args.model:
        return Path(args.model)
    from models.hub.starter import ensure_starter_model

    return ensure_starter_model(status=lambda message: print(message, file=sys.stderr))


def run_load(args: argparse.Namespace) -> int:
    """Run the sweep and print each level as it ends, then the answer; 0 ok, 1 failed, 130 cancelled."""
    import os
    import threading

    from models.bench.capacity.load_output import LoadPrinter
    from models.bench.capacity.serving import capacity_sentence
    from models.cli.jobs import run_cancellable

    plan = build_plan(args)
    printer = LoadPrinter(args.output, sys.stdout)
    summaries: list[Any] = []
    failure: dict[str, str] = {}
    if args.endpoint:
        from models.bench.capacity.sweep import run_sweep
        from models.bench.capacity.endpoint import Endpoint, run_endpoint_level

        key = os.environ.get(args.api_key_env) if args.api_key_env else None
        endpoint = Endpoint(args.endpoint, api=args.api, model=args.server_model, api_key=key)
        context = {"model": args.server_model or "(the server's model)", "target": endpoint.path,
                   "profile": plan.profile}
        stop = threading.Event()

        def level(concurrency: int, rate: float | None, shapes: list[Any], arrivals: list[float]) -> Any:
            if args.progress:
                print(f"tokenometer-load: {concurrency} at once" + (f", {rate:g}/s" if rate else ""),
                      file=sys.stderr, flush=True)
            return run_endpoint_level(endpoint, shapes, arrivals, concurrency=concurrency,
                                      closed_loop=rate is None, should_stop=stop.is_set)

        def work() -> None:
            summaries.extend(run_sweep(plan, level, on_level=lambda s, _r: printer.level(s, context),
                                       should_stop=stop.is_set))

        cancelled = run_cancellable(work, cancel=stop.set)
        machine = args.endpoint
        if args.save and summaries:
            _save_endpoint(plan, endpoint, summaries, sentence=capacity_sentence(
                summaries, model=str(context["model"]), machine=machine), cancelled=cancelled)
    else:
        from models.bench.runner import BenchRunner
        from models.bench.spec import check_job
        from models.bench.capacity.serving import LoadSummary
        from models.bench.spec import BenchJob

        model = _model(args)
        params = engine_params(args, model)
        job = BenchJob(model_path=model, params=params, tests=(), repetitions=1, load=plan)
        problem = check_job(job)
        if problem:
            raise BenchmarkError(problem)
        context = {"model": model.name, "target": f"llama.cpp here, {params.n_threads} threads",
                   "profile": plan.profile}

        def on_event(_job: Any, event: Any) -> None:
            if event.kind == "load_level":
                summary = LoadSummary.from_json(event.data["summary"])
                summaries.append(summary)
                printer.level(summary, context)
            elif event.kind == "failure":
                failure["message"] = event.data.get("message", "")
            elif event.kind == "progress" and args.progress:
                print(f"tokenometer-load: {event.data.get('test', '')} {event.data.get('phase', '')}",
                      file=sys.stderr, flush=True)

        recorder = None
        if args.save:
            from dataclasses import asdict

            from models.results.measurements import open_measurement_recorder

            recorder = open_measurement_recorder(
                kind="load", target="llama.cpp", model_path=model,
                settings={"plan": plan.to_json(), "params": asdict(params)},
                answer=lambda m: capacity_sentence(summaries, model=model.name, machine="this machine"))

        def relay(job_: Any, event: Any) -> None:
            on_event(job_, event)
            if recorder is not None:
                recorder(job_, event)

        runner = BenchRunner(on_event=relay)
        cancelled = run_cancellable(lambda: runner.run([job]), cancel=runner.cancel)
        machine = "this machine"
        if recorder is not None and recorder.error is not None:
            print(f"warning: the load test was not saved: {recorder.error}", file=sys.stderr)
    printer.finish(capacity_sentence(summaries, model=str(context["model"]), machine=machine))
    if summaries and args.output == "md" and not args.endpoint:
        _print_cost(summaries)
    if cancelled:
        return 130
    if failure:
        print(f"error: {failure['message']}", file=sys.stderr)
        return 1
    if summaries and summaries[0].completed == 0:  # nothing got through even at the lightest load: a setup fault
        print(f"error: no request succeeded: {'; '.join(summaries[0].errors) or 'no answer'}", file=sys.stderr)
        return 1
    return 0


def _print_cost(summaries: list[Any]) -> None:
    """The cost of a million tokens at the load the answer names, against the API's prices in the settings."""
    from models.results.load_cost import capacity_cost
    from models.settings import load_settings

    cost = capacity_cost(summaries, load_settings())
    if cost is None:
        print("Cost at that load: not known (no load met the SLO, or no power figure: set the system's watts in "
              "Settings where no energy sensor is readable).")
    else:
        print(f"Cost at that load: {cost.describe()}")


def _save_endpoint(plan: Any, endpoint: Any, summaries: list[Any], *, sentence: str, cancelled: bool) -> None:
    """Keep a load test against a server in the results store (its machine is this one, the client)."""
    from dataclasses import asdict

    from models.errors import StoreError
    from models.machine.hardware import machine_fingerprint
    from models.results.measurements import Measurement, record_measurement
    from models.results.store import ResultsStore

    settings = {"plan": plan.to_json(), "endpoint": {k: v for k, v in asdict(endpoint).items() if k != "api_key"}}
    measurement = Measurement(kind="load", target=endpoint.path, settings=settings, answer=sentence,
                              data={"levels": [s.to_json() for s in summaries]}, machine=machine_fingerprint(),
                              status="cancelled" if cancelled else "ok")
    try:
        with ResultsStore() as store:
            record_measurement(store, measurement)
    except StoreError as error:
        print(f"warning: the load test was not saved: {error}", file=sys.stderr)
