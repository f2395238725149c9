"""Perplexity and KL divergence measured as llama-perplexity does (tools/perplexity/perplexity.cpp), in-process.

The text is tokenized once (BOS added as the vocabulary asks, special tokens not parsed) and cut into chunks of
n_ctx tokens; n_batch / n_ctx chunks are evaluated side by side as separate sequences, each chunk in n_batch
slices, with its first token replaced by BOS where the model adds one. Only the second half of every chunk is
scored: each position from n_ctx/2 predicts the next token. PPL = exp(mean NLL) ± PPL * sd(NLL)/sqrt(N - 1).
With a reference (models.bench.quality.reference) every scored position also gives the KL divergence of this model's
distribution from the reference's; the summary is llama-perplexity --kl-divergence's.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from models.bench.token_batch import TokenBatch
from models.bench.quality.reference import (ReferenceInfo, ReferenceReader, ReferenceWriter, quantize_rows,
                                        scored_per_chunk, tokens_sha256)
from models.bench.quality.stats import (KldAccumulator, KldSlice, PplAccumulator, SliceBuffers, add_kld_slice,
                                       kld_slice, nll_rows)
from models.errors import BenchmarkError

log = logging.getLogger(__name__)

Emit = Callable[..., None]
# Rows of logits turned into statistics at a time: bounds each thread's float32 temporaries to a few x 64 x n_vocab.
ROW_SLICE = 64


def scoring_threads() -> int:
    """Threads that score rows: every CPU this process may use, as llama-perplexity's workers use them all."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class QualityCancelled(BenchmarkError):
    """The run was stopped between chunks."""


@dataclass(frozen=True)
class QualityShape:
    """The context llama-perplexity makes for -c N -b B: N-token chunks, B / N of them side by side."""

    n_ctx: int  # tokens per chunk (llama-perplexity's -c)
    n_seq: int  # chunks evaluated together, one sequence each
    n_batch: int  # tokens per llama_decode

    @property
    def context_size(self) -> int:
        """The llama.cpp context to create (n_seq_max = n_seq, not unified)."""
        return self.n_ctx * self.n_seq

    @classmethod
    def of(cls, n_ctx: int, n_batch: int) -> QualityShape:
        n_seq = max(1, n_batch // n_ctx)
        return cls(n_ctx=n_ctx, n_seq=n_seq, n_batch=min(n_batch, n_seq * n_ctx))


def tokenize_text(ll: Any, vocab: Any, text: str) -> np.ndarray:
    """common_tokenize(ctx, text, add_special=true, parse_special=false), as llama-perplexity calls it."""
    data = text.encode("utf-8")
    capacity = len(data) + 8  # a token covers at least one byte, plus BOS/EOS
    buf = (ctypes.c_int32 * capacity)()
    n = ll.llama_tokenize(vocab, data, len(data), buf, capacity, True, False)
    if n < 0:  # cannot happen with this capacity, but llama.cpp's contract says retry with -n
        capacity = -n
        buf = (ctypes.c_int32 * capacity)()
        n = ll.llama_tokenize(vocab, data, len(data), buf, capacity, True, False)
    return np.ctypeslib.as_array(buf)[:n].astype(np.int32)


def piece_bytes(ll: Any, vocab: Any, tokens: np.ndarray) -> int:
    """UTF-8 bytes the tokens stand for (special tokens count 0): the denominator of bits per byte."""
    unique, counts = np.unique(tokens, return_counts=True)
    buf = ctypes.create_string_buffer(256)
    total = 0
    for token, count in zip(unique.tolist(), counts.tolist()):
        n = ll.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
        if n < 0:
            big = ctypes.create_string_buffer(-n)
            n = ll.llama_token_to_piece(vocab, token, big, len(big), 0, False)
        total += max(0, n) * count
    return total


@dataclass
class QualityResult:
    """What one run measured: perplexity (and bits per byte) always, the KL divergence block with a reference."""

    n_ctx: int
    n_batch: int
    n_seq: int
    n_chunk: int
    n_tokens: int  # the text's tokens
    n_scored: int  # positions scored
    scored_bytes: int
    token_sha256: str
    ppl: float
    ppl_err: float
    nll: float  # mean negative log-likelihood, nats per token
    bits_per_byte: float
    seconds: float
    kld: dict[str, float] | None = None
    reference: str = ""  # the reference file compared against (or written)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QualityResult:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class QualityInput:
    """The checked tokens and chunking of one run; made by `prepare`, before anything is evaluated."""

    tokens: np.ndarray
    n_ctx: int
    n_chunk: int
    reference: ReferenceInfo | None = None


def prepare(tokens: np.ndarray, *, n_ctx: int, n_chunks: int, n_vocab: int,
            reference: ReferenceInfo | None = None) -> QualityInput:
    """Refuse, before any work, a text too short for one chunk or a reference from another model or text."""
    if reference is None:
        if n_ctx < 8:
            raise BenchmarkError(f"The chunk size must be at least 8 tokens, got {n_ctx}.")
        if len(tokens) < 2 * n_ctx:
            # llama-perplexity's own rule: at least two chunks' worth of tokens.
            raise BenchmarkError(
                f"The text is too short: it tokenizes to {len(tokens)} tokens, and perplexity with chunks of "
                f"{n_ctx} needs at least {2 * n_ctx}. Use a longer text or a smaller -c.")
        n_chunk = len(tokens) // n_ctx
        n_chunk = n_chunk if n_chunks <= 0 else min(n_chunks, n_chunk)
        return QualityInput(tokens=tokens, n_ctx=n_ctx, n_chunk=n_chunk)
    name = reference.path.name
    if reference.n_vocab != n_vocab:
        raise BenchmarkError(
            f"{name} was computed with another model: its vocabulary has {reference.n_vocab} tokens, this "
            f"model's {n_vocab}. KL divergence compares quants of the same model.")
    want = reference.tokens
    if len(tokens) < len(want) or not np.array_equal(tokens[:len(want)], want):
        first = _first_difference(tokens, want)
        raise BenchmarkError(
            f"{name} was computed on another text (or another tokenizer): its {len(want)} tokens differ from "
            f"this text's from token {first}. Use the text the reference was made from.")
    n_chunk = reference.n_chunk if n_chunks <= 0 else min(n_chunks, reference.n_chunk)
    return QualityInput(tokens=want, n_ctx=reference.n_ctx, n_chunk=n_chunk, reference=reference)


def _first_difference(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    diff = np.nonzero(a[:n] != b[:n])[0]
    return int(diff[0]) if len(diff) else n


class QualityRun:
    """llama-perplexity's perplexity() / kl_divergence() loop over one context shaped by QualityShape."""

    def __init__(self, ll: Any, ctx: Any, vocab: Any, *, shape: QualityShape, emit: Emit | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.ll, self.ctx, self.vocab = ll, ctx, vocab
        self.shape = shape
        self.emit = emit or (lambda kind, **data: None)
        self.should_stop = should_stop
        self.n_vocab = int(ll.llama_vocab_n_tokens(vocab))
        self.add_bos = bool(ll.llama_vocab_get_add_bos(vocab))
        self.bos = int(ll.llama_vocab_bos(vocab))
        if int(ll.llama_n_ctx(ctx)) < shape.context_size:
            raise BenchmarkError(f"The context holds {ll.llama_n_ctx(ctx)} tokens; {shape.n_seq} chunks of "
                                 f"{shape.n_ctx} need {shape.context_size}.")

    def run(self, job: QualityInput, *, save_reference: ReferenceWriter | None = None,
            meta: dict[str, Any] | None = None) -> QualityResult:
        ll, ctx, shape = self.ll, self.ctx, self.shape
        n_ctx, n_chunk, n_vocab = job.n_ctx, job.n_chunk, self.n_vocab
        if n_ctx != shape.n_ctx:
            raise BenchmarkError(f"The context was made for chunks of {shape.n_ctx}, the run needs {n_ctx}.")
        n_seq = min(shape.n_seq, int(ll.llama_n_seq_max(ctx)))
        n_batch = shape.n_batch
        first = n_ctx // 2
        n_rows = scored_per_chunk(n_ctx)
        num_batches = (n_ctx + n_batch - 1) // n_batch
        tokens = job.tokens
        reader = ReferenceReader(job.reference) if job.reference is not None else None
        # The rows are scored on every CPU between decodes (numpy releases the GIL), as llama-perplexity's
        # process_logits does; the reference's next rows are read on their own thread while llama.cpp decodes.
        pool = ThreadPoolExecutor(max_workers=scoring_threads(), thread_name_prefix="quality-score")
        prefetch = _Prefetch(reader, n_chunk) if reader is not None else None
        ppl = PplAccumulator()
        kld = KldAccumulator(n_chunk * n_rows) if reader is not None else None
        batch = TokenBatch(ll, n_batch)
        mem = ll.llama_get_memory(ctx)
        chunk_logits = np.empty((n_rows + 1, n_vocab), dtype=np.float32) if num_batches > 1 else None
        scored_bytes = 0
        started = time.perf_counter()
        try:
            for i in range(0, n_chunk, n_seq):
                if self.should_stop():
                    raise QualityCancelled("Cancelled.")
                start = i * n_ctx
                n_seq_batch = min(n_seq, n_chunk - i)
                ll.llama_memory_clear(mem, True)
                kept = 0
                for j in range(num_batches):
                    batch_start = start + j * n_batch
                    batch_size = min(start + n_ctx - batch_start, n_batch)
                    self._fill(batch, tokens, batch_start, batch_size, j * n_batch, n_seq_batch, n_ctx, first, j == 0)
                    if ll.llama_decode(ctx, batch.view(0, batch.size)) != 0:
                        raise BenchmarkError(f"llama_decode failed on chunk {i + 1} (batch {j + 1}).")
                    n_out = max(0, j * n_batch + batch_size - max(j * n_batch, first)) * n_seq_batch
                    if chunk_logits is not None and n_out:
                        # n_seq is 1 here: the outputs of each slice, appended (llama-perplexity's logits vector)
                        view = np.ctypeslib.as_array(ll.llama_get_logits(ctx), shape=(n_out * n_vocab,))
                        take = min(n_out, n_rows + 1 - kept)
                        chunk_logits[kept:kept + take] = view[:take * n_vocab].reshape(take, n_vocab)
                        kept += take
                for seq in range(n_seq_batch):
                    if chunk_logits is not None:
                        logits = chunk_logits[:n_rows]
                    else:
                        ptr = ll.llama_get_logits_ith(ctx, seq * n_ctx + first)
                        logits = np.ctypeslib.as_array(ptr, shape=(n_rows * n_vocab,)).reshape(n_rows, n_vocab)
                    at = start + seq * n_ctx + first
                    targets = tokens[at + 1:at + 1 + n_rows]
                    scored_bytes += piece_bytes(ll, self.vocab, targets)
                    base = prefetch.take() if prefetch is not None else None
                    self._score(pool, logits, targets, ppl, kld, base, save_reference)
                    done = i + seq + 1
                    self.emit("quality_chunk", chunk=done, of=n_chunk, fraction=done / n_chunk,
                              **ppl.summary(), **({"kld": kld.mean()[0], "same_top": kld.same_top()[0]}
                                                  if kld is not None else {}))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if prefetch is not None:
                prefetch.close()
        seconds = time.perf_counter() - started
        summary = ppl.summary()
        result = QualityResult(
            n_ctx=n_ctx, n_batch=n_batch, n_seq=n_seq, n_chunk=n_chunk, n_tokens=len(tokens),
            n_scored=ppl.count, scored_bytes=scored_bytes,
            token_sha256=tokens_sha256(tokens[:n_chunk * n_ctx]), ppl=summary["ppl"], ppl_err=summary["ppl_err"],
            nll=summary["nll"], bits_per_byte=ppl.sum / math.log(2) / scored_bytes if scored_bytes else math.nan,
            seconds=seconds, kld=kld.summary(ppl) if kld is not None else None,
            reference=str(job.reference.path) if job.reference is not None else "")
        if save_reference is not None:
            summary_keys = ("ppl", "ppl_err", "nll", "bits_per_byte", "n_scored", "scored_bytes", "token_sha256",
                            "n_tokens", "n_ctx", "n_chunk")
            result.reference = str(save_reference.finish({**(meta or {}),
                                                          **{k: getattr(result, k) for k in summary_keys}}))
        return result

    def _fill(self, batch: TokenBatch, tokens: np.ndarray, batch_start: int, size: int, pos0: int, n_seq: int,
              n_ctx: int, first: int, first_slice: bool) -> None:
        """One slice of every chunk in the batch; BOS in place of each chunk's first token on its first slice."""
        batch.clear()
        positions = np.arange(pos0, pos0 + size, dtype=np.int32)
        want = (positions >= first).astype(np.int8)
        for seq in range(n_seq):
            at = batch.size
            ids = tokens[batch_start + seq * n_ctx:batch_start + seq * n_ctx + size]
            _view(batch.token, at, size)[:] = ids
            if self.add_bos and first_slice:
                batch.token[at] = self.bos
            _view(batch.pos, at, size)[:] = positions
            _view(batch.seq_store, at, size)[:] = seq
            _view(batch.logits, at, size, np.int8)[:] = want
            batch.size = at + size

    def _score(self, pool: ThreadPoolExecutor, logits: np.ndarray, targets: np.ndarray, ppl: PplAccumulator, kld: KldAccumulator | None,
               base: np.ndarray | None, writer: ReferenceWriter | None) -> None:
        """Score one chunk's rows in slices on the pool, then fold the slices in row order (threads cannot change
        the sums)."""
        starts = range(0, len(targets), ROW_SLICE)

        def rows(lo: int) -> tuple[np.ndarray, np.ndarray]:
            return logits[lo:lo + ROW_SLICE], targets[lo:lo + ROW_SLICE]

        if kld is not None and base is not None:
            reference = base

            def measure(lo: int) -> KldSlice:
                return kld_slice(*rows(lo), reference[lo:lo + ROW_SLICE], _thread_buffers())

            for part in pool.map(measure, starts):
                add_kld_slice(part, kld, ppl)
        elif writer is not None:
            quantized: list[np.ndarray] = []
            for (lo, (row_block, nll)) in zip(starts, pool.map(lambda lo: quantize_rows(*rows(lo)), starts)):
                quantized.append(row_block)
                ppl.add(nll if nll is not None else nll_rows(*rows(lo)))
            writer.write_chunk(np.concatenate(quantized))
        else:
            for nll in pool.map(lambda lo: nll_rows(*rows(lo)), starts):
                ppl.add(nll)


_THREAD_STATE = threading.local()


def _thread_buffers() -> SliceBuffers:
    """The calling pool thread's own work arrays, made on its first slice and kept while the thread lives."""
    buffers = getattr(_THREAD_STATE, "buffers", None)
    if buffers is None:
        buffers = _THREAD_STATE.buffers = SliceBuffers()
    return buffers


class _Prefetch:
    """Reads a reference's next chunk of rows on a thread while the current one is decoded and scored."""

    def __init__(self, reader: ReferenceReader, n_chunk: int) -> None:
        self._reader = reader
        self._left = n_chunk  # chunks still to read: none past the run's last
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quality-read")
        self._next: Future[np.ndarray] | None = None
        self._start()

    def _start(self) -> None:
        if self._left > 0:
            self._left -= 1
            self._next = self._thread.submit(self._reader.next_chunk)
        else:
            self._next = None

    def take(self) -> np.ndarray:
        """This chunk's rows (a read error is raised here, in the run's thread), and the next read started."""
        if self._next is None:
            raise BenchmarkError("The run asked the reference for more chunks than it has.")
        rows = self._next.result()
        self._start()
        return rows

    def close(self) -> None:
        """Wait for a read in flight (its stream is closed next), then close the file."""
        self._thread.shutdown(wait=True, cancel_futures=True)
        self._reader.close()


def _view(array: Any, start: int, count: int, dtype: Any = np.int32) -> np.ndarray:
    return np.ctypeslib.as_array(array).view(dtype)[start:start + count]
