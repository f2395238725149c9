"""CLI: tokenometer quality, perplexity and KL divergence as llama-perplexity measures them, in the bench worker."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from models.cli.engine_flags import add_engine_flags, engine_params
from models.errors import BenchmarkError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `tokenometer quality`."""
    from models.bench.quality.output import FORMATS

    parser = subparsers.add_parser(
        "quality", allow_abbrev=False,
        help="perplexity, bits per byte and KL divergence against a reference (llama-perplexity's method)",
        description="Measure how well a model predicts a text, as llama-perplexity does: the text cut into chunks "
                    "of -c tokens, the second half of each scored. Perplexity is per token, so only comparable "
                    "between models with the same tokenizer; bits per byte compares any models on the same text. "
                    "With --ref (a larger quant of the same model, or a reference file saved with --save-ref or "
                    "llama-perplexity --kl-divergence-base), each MODEL's KL divergence from it is reported too. "
                    "A reference holds about 2 x (vocabulary + 4) bytes per scored token. With no model, the "
                    "starter model is used.")
    parser.add_argument("models", nargs="*", metavar="MODEL", help="GGUF files (default: the starter model)")
    add = parser.add_argument
    add("--ref", metavar="MODEL|FILE", help="reference: a GGUF of the same model (its log-probabilities are "
                                            "computed first and kept for reuse) or a saved reference file")
    add("--save-ref", metavar="FILE", help="save the (single) MODEL's log-probabilities as a reference file")
    add("--text", default="wikitext-2", metavar="FILE|wikitext-2",
        help="UTF-8 text file, or wikitext-2 (the raw test split, downloaded once from the Hub) (wikitext-2)")
    add("-c", "--ctx-size", type=int, default=512, metavar="N", help="tokens per chunk (512)")
    add("--chunks", type=int, default=0, metavar="N", help="chunks to evaluate (all)")
    add_engine_flags(parser, batch_help="n_batch: b / c chunks run together (2048)")
    add("-o", "--output", choices=FORMATS, default="md", help="output format (md)")
    add("--progress", action="store_true", help="print each chunk's running figures to stderr")
    add("--no-save", dest="save", action="store_false",
        help="do not keep the results in the results store (by default each model's result is saved)")
    parser.set_defaults(handler=run_quality_command)


def _job(args: argparse.Namespace, model: Path, plan: Any) -> Any:
    from models.bench.spec import BenchJob

    return BenchJob(model_path=model, params=engine_params(args, model), tests=(), repetitions=1, quality=plan)


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            return stream.read(4) == b"GGUF"
    except OSError:
        return False


def run_quality_command(args: argparse.Namespace) -> int:
    """Each model in a worker in turn (the reference first); rows printed as they come. 0 ok, 1 failed, 130."""
    from models.bench.quality.reference import read_reference
    from models.bench.quality.output import QualityPrinter
    from models.bench.quality.plan import QualityPlan, reference_cache
    from models.bench.runner import BenchRunner, check_job
    from models.cli.jobs import run_cancellable

    models = [Path(m) for m in args.models]
    if not models:
        from models.hub.starter import ensure_starter_model

        models = [ensure_starter_model(status=lambda message: print(message, file=sys.stderr))]
    if args.save_ref and len(models) > 1:
        raise BenchmarkError("--save-ref saves one model's log-probabilities; give a single MODEL.")
    plan = QualityPlan(text=args.text, n_ctx=args.ctx_size, n_chunks=args.chunks, save_reference=args.save_ref or "")
    jobs: list[Any] = []
    ref_file = ""
    printer = QualityPrinter(args.output, sys.stdout)
    if args.ref:
        ref = Path(args.ref)
        if not ref.exists():
            raise BenchmarkError(f"The reference {ref} does not exist.")
        if _is_gguf(ref):
            cached = reference_cache(ref, args.text, n_ctx=args.ctx_size, n_chunks=args.chunks)
            if cached.exists():
                info = read_reference(cached)  # a damaged cache is refused with its reason, not recomputed silently
                printer.row({**info.meta, "model_filename": str(ref), "n_ctx": info.n_ctx, "n_chunk": info.n_chunk,
                             "n_scored": info.meta.get("n_scored", ""), "reference": str(cached)})
            else:
                jobs.append(_job(args, ref, QualityPlan(text=args.text, n_ctx=args.ctx_size, n_chunks=args.chunks,
                                                        save_reference=str(cached))))
            ref_file = str(cached)
        else:
            ref_file = str(ref)
    for model in models:
        job = _job(args, model, QualityPlan(text=plan.text, n_ctx=plan.n_ctx, n_chunks=plan.n_chunks,
                                           reference=ref_file, save_reference=plan.save_reference))
        jobs.append(job)
    for job in jobs:
        # A reference file still to be computed cannot be read yet: only the settings are checked for those.
        problem = check_job(job) if not (job.quality.reference and not Path(job.quality.reference).exists()) else None
        if problem:
            raise BenchmarkError(problem)
    outcome: dict[str, Any] = {"failure": "", "rows": 0, "recorder": None, "unsaved": []}

    def on_event(job: Any, event: Any) -> None:
        data = event.data
        if outcome["recorder"] is not None:
            outcome["recorder"](job, event)
        if event.kind == "quality":
            printer.row(data.get("result", {}))
            outcome["rows"] += 1
        elif event.kind == "failure":
            outcome["failure"] = data.get("message", "")
        elif event.kind == "quality_chunk" and args.progress:
            kld = f", KLD {data['kld']:.5f}" if data.get("kld") is not None else ""
            print(f"tokenometer-quality: {job.model_path.name} chunk {data.get('chunk')}/{data.get('of')}: "
                  f"PPL {data.get('ppl', 0):.4f} ± {data.get('ppl_err', 0):.4f}{kld}", file=sys.stderr, flush=True)

    runner = BenchRunner(on_event=on_event)

    def work() -> None:
        for job in jobs:
            if getattr(args, "save", False):
                from models.results.quality_records import open_quality_recorder

                outcome["recorder"] = open_quality_recorder(job)
            runner.run([job])
            from models.bench.quality.job import discard_partial_reference

            discard_partial_reference(job.quality)  # a worker stopped mid-way leaves FILE.part behind
            if outcome["recorder"] is not None and outcome["recorder"].error is not None:
                outcome["unsaved"].append(f"{job.model_path.name}: {outcome['recorder'].error}")
            if outcome["failure"] or runner.cancelled:
                return

    cancelled = run_cancellable(work, cancel=runner.cancel)
    printer.finish()
    for warning in outcome["unsaved"]:
        print(f"warning: the result was not saved: {warning}", file=sys.stderr)
    if cancelled:
        return 130
    if outcome["failure"]:
        print(f"error: {outcome['failure']}", file=sys.stderr)
        return 1
    return 0
