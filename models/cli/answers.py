"""CLI: tokenometer answers, one prompt answered by several models in turn (in the bench worker), streamed."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from models.bench.quality.answers import figures
from models.errors import BenchmarkError
from models.text import printable

log = logging.getLogger(__name__)

FORMATS = ("text", "md", "json")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `tokenometer answers`."""
    parser = subparsers.add_parser(
        "answers", allow_abbrev=False, help="the same prompt answered by several models, with TTFT and speed",
        description="Ask each MODEL the same prompt, one after another, and print the answers as they stream with "
                    "each one's time to first token and tokens per second. The prompt is wrapped in the model's "
                    "chat template by llama.cpp's own template matcher. The sampling settings and seed are printed "
                    "and apply to every model. With no model, the starter model is used.")
    parser.add_argument("models", nargs="*", metavar="MODEL", help="GGUF files (default: the starter model)")
    add = parser.add_argument
    add("-p", "--prompt", metavar="TEXT", help="the prompt (default: --sample 1)")
    add("--sample", type=int, metavar="N", help="use sample prompt N (1-4; see --list-samples)")
    add("--list-samples", action="store_true", help="print the sample prompts and exit")
    add("-n", "--n-predict", type=int, default=256, metavar="N", help="tokens to generate at most (256)")
    add("--temp", type=float, default=0.8, metavar="T", help="temperature, 0 for greedy (0.8)")
    add("--top-k", type=int, default=40, metavar="K", help="top-k, 0 for off (40)")
    add("--top-p", type=float, default=0.95, metavar="P", help="top-p (0.95)")
    add("--min-p", type=float, default=0.05, metavar="P", help="min-p (0.05)")
    add("-s", "--seed", type=int, default=1234, metavar="N", help="sampling seed (1234)")
    add("--no-chat", dest="chat", action="store_false", help="send the prompt as plain text, without the template")
    add("-t", "--threads", type=int, default=None, metavar="N", help="threads (default: as tokenometer bench)")
    add("-ngl", "--n-gpu-layers", type=int, default=None, metavar="N", help="layers on the GPU (all)")
    add("-o", "--output", choices=FORMATS, default="text", help="text streams; md and json print at the end (text)")
    add("--no-save", dest="save", action="store_false",
        help="do not keep the answers in the results store (by default each model's answer is saved)")
    parser.set_defaults(handler=run_answers_command)


def build_plan(args: argparse.Namespace) -> Any:
    from models.bench.quality.answers import SAMPLE_PROMPTS, AnswersPlan

    if args.prompt is not None and args.sample is not None:
        raise BenchmarkError("Give --prompt or --sample, not both.")
    if args.prompt is None:
        index = args.sample or 1
        if not 1 <= index <= len(SAMPLE_PROMPTS):
            raise BenchmarkError(f"There are {len(SAMPLE_PROMPTS)} sample prompts; --sample {index} is not one.")
        prompt = SAMPLE_PROMPTS[index - 1]
    else:
        prompt = args.prompt
    plan = AnswersPlan(prompt=prompt, n_predict=args.n_predict, temperature=args.temp, top_k=args.top_k,
                       top_p=args.top_p, min_p=args.min_p, seed=args.seed, chat=args.chat)
    problem = plan.problem()
    if problem:
        raise BenchmarkError(problem)
    return plan


def _job(args: argparse.Namespace, model: Path, plan: Any) -> Any:
    from models.bench.spec import BenchJob, BenchParams, BenchSweep

    defaults = BenchSweep(models=[model])
    params = BenchParams(
        n_threads=args.threads if args.threads is not None else defaults.n_threads[0],
        n_gpu_layers=args.n_gpu_layers if args.n_gpu_layers is not None else defaults.n_gpu_layers[0])
    return BenchJob(model_path=model, params=params, tests=(), repetitions=1, answers=plan)


def sampling_line(plan: Any) -> str:
    s = plan.sampling()
    return (f"sampling: temperature {s['temperature']:g}, top-k {s['top_k']}, top-p {s['top_p']:g}, min-p "
            f"{s['min_p']:g}, seed {s['seed']}, up to {s['n_predict']} tokens"
            + ("" if s["chat_template"] else ", no chat template"))


def markdown(records: list[dict[str, Any]], plan: Any) -> str:
    lines = [f"prompt: {printable(plan.prompt)}", sampling_line(plan), "",
             "| model | answer | TTFT ms | prompt t/s | gen t/s | tokens | stop |", "|---|---|---|---|---|---|---|"]
    for r in records:
        answer = printable(r.get("text", "")).replace("|", "\\|").replace("\n", "<br>")
        name = printable(Path(str(r.get("model_filename", ""))).name)
        lines.append(f"| {name} | {answer} | {r.get('ttft_ms', 0):.0f} | {r.get('prompt_tps', 0):.1f} | "
                     f"{r.get('gen_tps', 0):.1f} | {r.get('n_gen', 0)} | {r.get('stop', '')} |")
    return "\n".join(lines) + "\n"


def run_answers_command(args: argparse.Namespace) -> int:
    """Each model in a worker in turn; 0 ok, 1 failed, 130 cancelled."""
    from models.bench.quality.answers import SAMPLE_PROMPTS
    from models.bench.runner import BenchRunner, check_job
    from models.cli.jobs import run_cancellable

    if args.list_samples:
        for number, prompt in enumerate(SAMPLE_PROMPTS, 1):
            print(f"{number}. {prompt}")
        return 0
    plan = build_plan(args)
    models = [Path(m) for m in args.models]
    if not models:
        from models.hub.starter import ensure_starter_model

        models = [ensure_starter_model(status=lambda message: print(message, file=sys.stderr))]
    jobs = [_job(args, model, plan) for model in models]
    for job in jobs:
        problem = check_job(job)
        if problem:
            raise BenchmarkError(problem)
    out = sys.stdout
    streaming = args.output == "text"
    if streaming:
        out.write(f"prompt: {printable(plan.prompt)}\n{sampling_line(plan)}\n")
    records: list[dict[str, Any]] = []
    failures: list[str] = []
    recorders: dict[int, Any] = {}  # one measurement per model's answer, made as its job starts
    from models.results.answers_records import answers_settings, open_answers_recorder

    settings = answers_settings(plan, jobs)

    def on_event(job: Any, event: Any) -> None:
        data = event.data
        if getattr(args, "save", False):
            if id(job) not in recorders:
                recorders[id(job)] = open_answers_recorder(job, settings)
            recorders[id(job)](job, event)
        if event.kind == "started" and streaming:
            out.write(f"\n== {printable(job.model_path.name)} ==\n")
        elif event.kind == "answer_piece" and streaming:
            out.write(printable(data.get("text", ""), newlines=True))
        elif event.kind == "answer":
            result = {"model_filename": str(job.model_path), **data.get("result", {})}
            records.append(result)
            if streaming:
                out.write(f"\n-- {figures(result)}\n")
        elif event.kind == "failure":
            failures.append(f"{job.model_path.name}: {data.get('message', '')}")
            if streaming:
                out.write(f"\n-- failed: {printable(data.get('message', ''))}\n")
        out.flush()

    runner = BenchRunner(on_event=on_event)
    cancelled = run_cancellable(lambda: runner.run(jobs), cancel=runner.cancel)
    if args.output == "json":
        json.dump({"prompt": plan.prompt, "sampling": plan.sampling(), "answers": records}, out, indent=2)
        out.write("\n")
    elif args.output == "md":
        out.write(markdown(records, plan))
    out.flush()
    for recorder in recorders.values():
        if recorder.error is not None:
            print(f"warning: an answer was not saved: {recorder.error}", file=sys.stderr)
    if cancelled:
        return 130
    for failure in failures:
        print(f"error: {printable(failure)}", file=sys.stderr)
    return 1 if failures else 0
