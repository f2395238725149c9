"""A quality job: perplexity of a text (and KL divergence against a saved reference) for one loaded model.

`QualityPlan` is what the CLI, GUI or queue asks for; `check_plan` refuses what can be refused without loading
the model (no text, a reference file that is truncated or not one); `run_quality` does the rest inside the
worker, where the model is loaded: the text tokenized and checked against the reference, a context shaped as
llama-perplexity shapes it, the chunks evaluated (models.bench.quality.perplexity), events emitted as it goes.
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.bench.quality.reference import ReferenceInfo, ReferenceWriter, expected_size, read_reference
from models.bench.quality.perplexity import QualityResult, QualityRun, QualityShape, prepare, tokenize_text
from models.bench.quality.plan import WIKITEXT2, QualityPlan
from models.errors import BenchmarkError

log = logging.getLogger(__name__)

Emit = Callable[..., None]
# Where llama.cpp's scripts/get-wikitext-2.sh takes it from: the raw test split that its published numbers use.
WIKITEXT2_REPO = "ggml-org/ci"
WIKITEXT2_FILE = "wikitext-2-raw-v1.zip"
WIKITEXT2_MEMBER = "wikitext-2-raw/wiki.test.raw"
_CACHE_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "iq4_nl": 20, "bf16": 30}
_FLASH_ATTN = {"auto": -1, "off": 0, "on": 1}


def load_text(spec: str, *, download: bool = True) -> tuple[str, str]:
    """(text, name) for a text file path or "wikitext-2"; a file must be UTF-8."""
    path = wikitext2_path(download=download) if spec == WIKITEXT2 else Path(spec)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BenchmarkError(f"Cannot read the text file {path}: {error.strerror or error}") from error
    try:
        return data.decode("utf-8"), (WIKITEXT2 if spec == WIKITEXT2 else path.name)
    except UnicodeDecodeError as error:
        raise BenchmarkError(f"{path.name} is not UTF-8 text (byte {error.start} cannot be decoded).") from error


def wikitext2_path(*, download: bool = True) -> Path:
    """WikiText-2 raw's test split, fetched once from the Hub (sha256-checked by huggingface_hub) and unpacked."""
    from models.paths import data_dir

    target = data_dir(create=True) / "texts" / "wiki.test.raw"
    if target.is_file():
        return target
    if not download:
        raise BenchmarkError(f"WikiText-2 is not downloaded yet ({target}).")
    from huggingface_hub import hf_hub_download

    from models.hub.reach import require_hub

    require_hub("download WikiText-2 (or pass a text file with --text FILE)")
    try:
        archive = Path(hf_hub_download(WIKITEXT2_REPO, WIKITEXT2_FILE, repo_type="dataset"))
        with zipfile.ZipFile(archive) as bundle:
            data = bundle.read(WIKITEXT2_MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise BenchmarkError(f"Could not get WikiText-2 from {WIKITEXT2_REPO}: {error}") from error
    except Exception as error:  # huggingface_hub's HTTP errors: named, not a traceback
        raise BenchmarkError(f"Could not download WikiText-2 from {WIKITEXT2_REPO}: {error}") from error
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    part.write_bytes(data)
    part.replace(target)
    return target


def quality_context(ll: Any, model: Any, shape: QualityShape, *, n_threads: int, n_ubatch: int = 512,
                    type_k: str = "f16", type_v: str = "f16", flash_attn: str = "auto",
                    offload_kqv: bool = True) -> Any:
    """The context llama-perplexity makes: n_seq sequences of n_ctx cells each, n_batch = n_seq * n_ctx at most."""
    params = ll.llama_context_default_params()
    params.n_ctx = shape.context_size
    params.n_batch = shape.n_batch
    params.n_ubatch = min(n_ubatch, shape.n_batch)
    params.n_seq_max = shape.n_seq
    params.n_threads = params.n_threads_batch = n_threads
    params.type_k, params.type_v = _CACHE_TYPES[type_k], _CACHE_TYPES[type_v]
    params.flash_attn_type = _FLASH_ATTN[flash_attn]
    params.offload_kqv = offload_kqv
    ctx = ll.llama_init_from_model(model, params)
    if not ctx:
        raise BenchmarkError(f"llama.cpp could not create a context of {shape.n_seq} x {shape.n_ctx} tokens.")
    return ctx


def run_quality(ll: Any, model: Any, plan: QualityPlan, *, n_batch: int = 2048, emit: Emit | None = None,
                should_stop: Callable[[], bool] = lambda: False, meta: dict[str, Any] | None = None,
                context: Callable[[QualityShape], Any] | None = None) -> QualityResult:
    """Check the text (and reference) against this model, then measure; every refusal comes before any decode.

    `context(shape)` makes the llama.cpp context (the worker passes its own, with the job's threads and cache
    types); by default quality_context with llama.cpp's default thread count.
    """
    emit = emit or (lambda kind, **data: None)
    vocab = ll.llama_model_get_vocab(model)
    n_vocab = int(ll.llama_vocab_n_tokens(vocab))
    if ll.llama_vocab_get_add_eos(vocab):
        raise BenchmarkError("This model's tokenizer appends an end-of-text token; llama-perplexity refuses such "
                             "models for perplexity and so does Tokenometer.")
    reference: ReferenceInfo | None = read_reference(Path(plan.reference)) if plan.reference else None
    text, name = load_text(plan.text)
    tokens = tokenize_text(ll, vocab, text)
    job = prepare(tokens, n_ctx=plan.n_ctx, n_chunks=plan.n_chunks, n_vocab=n_vocab, reference=reference)
    shape = QualityShape.of(job.n_ctx, n_batch)
    n_train = int(ll.llama_model_n_ctx_train(model))
    if 0 < n_train < job.n_ctx:  # llama-perplexity warns and goes on; so do we
        emit("log", level="warning", message=f"The model was trained on only {n_train} context tokens "
                                             f"({job.n_ctx} per chunk asked).")
    emit("log", level="info", message=f"Quality: {name}, {len(tokens)} tokens, {job.n_chunk} chunks of {job.n_ctx}"
                                      f" ({shape.n_seq} at a time)" + (f", against {reference.describe()}"
                                                                       if reference else ""))
    if plan.save_reference:  # a reference holds every scored token's distribution: refuse a disk that cannot
        _check_room(Path(plan.save_reference), expected_size(job.n_ctx, n_vocab, job.n_chunk))
    if context is None:
        from models.bench.cores import cpu_get_num_math

        ctx = quality_context(ll, model, shape, n_threads=cpu_get_num_math())
    else:
        ctx = context(shape)
    writer = None
    if plan.save_reference:
        writer = ReferenceWriter(Path(plan.save_reference), n_ctx=job.n_ctx, n_vocab=n_vocab,
                                 tokens=job.tokens[:job.n_chunk * job.n_ctx])
    try:
        result = QualityRun(ll, ctx, vocab, shape=shape, emit=emit, should_stop=should_stop).run(
            job, save_reference=writer, meta={"text": name, **(meta or {})})
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        ll.llama_free(ctx)
    emit("quality", result={**(meta or {}), **result.to_json(), "text": name})
    return result


def _check_room(target: Path, need: int) -> None:
    """Refuse, before any work, a reference the disk cannot hold (they are large: ~2 x vocabulary bytes a token)."""
    from models.units import fmt_bytes

    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
    except OSError as error:
        raise BenchmarkError(f"Cannot write the reference in {folder}: {error.strerror or error}") from error
    if free < need:
        raise BenchmarkError(f"The reference file needs {fmt_bytes(need)} and {folder} has {fmt_bytes(free)} free; "
                             f"use fewer chunks (--chunks) or another folder.")


def discard_partial_reference(plan: QualityPlan) -> bool:
    """Remove what a cancelled or crashed worker left of a reference it was writing (FILE.part); True if any.

    A worker stopped by a signal cannot clean up after itself; whoever ran the job (CLI, GUI) calls this after.
    """
    if not plan.save_reference:
        return False
    part = Path(plan.save_reference)
    part = part.with_name(part.name + ".part")
    try:
        part.unlink()
    except FileNotFoundError:
        return False
    except OSError as error:
        log.warning("Could not remove the partial reference %s: %s", part, error)
        return False
    return True
