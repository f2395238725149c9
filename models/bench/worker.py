"""The benchmark worker: a child process that loads one model with llama.cpp, runs one job and prints events."""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import gc
import json
import logging
import os
import random
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

from models.bench.trust.adaptive import interval_fields
from models.bench.estimate import FitEstimator, fit_estimator
from models.bench.events import BenchEvent
from models.bench.lifeline import die_with_parent, watch_stdin
from models.bench.llamalog import LlamaLog
from models.bench.pagecache import cached_fraction, page_cache_label
from models.bench.procmem import process_memory
from models.bench.record import blank_result
from models.bench.setup import (BenchTestFailure, WorkerFailure, build_info, check_model_file,  # noqa: F401
                                prepare_process)
from models.bench.spec import SPLIT_MODES, BenchJob, BenchResult, BenchTest
from models.bench.stats import rates, summarize
from models.bench.threadpool import Threadpools, ThreadpoolError
from models.errors import BenchmarkError

log = logging.getLogger(__name__)

# Test-only fault injection: the runner's crash handling is tested against a real dying process.
FAULT_ENV = "TOKENOMETER_WORKER_FAULT"  # "segfault" | "abort" | "exit", after the first timed sample

GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "iq4_nl": 20,
              "bf16": 30}
FLASH_ATTN = {"auto": -1, "off": 0, "on": 1}


class Emitter:
    """Writes protocol events to the saved stdout; native code's own stdout output goes to stderr."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()  # llama.cpp may log from its own threads

    def __call__(self, kind: str, **data: Any) -> None:
        line = BenchEvent(kind=kind, data=data).to_line() + "\n"  # type: ignore[arg-type]
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


class Bench:
    """One loaded model and the llama.cpp calls that time it."""

    def __init__(self, llama: Any, job: BenchJob, emit: Emitter, llog: LlamaLog, *, perf: bool,
                 pools: Threadpools | None = None, estimate: FitEstimator | None = None) -> None:
        self.ll = llama
        self.job = job
        self.emit = emit
        self.llog = llog
        self.perf = perf
        self.pools = pools
        self.estimate = estimate
        self.model: Any = None
        self.info: dict[str, Any] = {}
        self._fault = os.environ.get(FAULT_ENV, "")
        self.rng = random.Random(job.seed)
        # llama-bench's ctx_state: the sequence's state after the last depth prefill, restored for every later
        # repetition (and test) at that depth instead of prefilling again.
        self._depth_state: tuple[int, Any] | None = None
        self._pool = 0

    def memory(self) -> None:
        """The worker's memory now, as a memory event: between repetitions, never inside one."""
        found = process_memory()
        if found is not None:
            self.emit("memory", **found.to_json())

    # -- loading --
    def load(self) -> None:
        ll, job = self.ll, self.job
        p = job.params
        mparams = ll.llama_model_default_params()
        mparams.n_gpu_layers = p.n_gpu_layers  # -1: llama.cpp puts every layer and the output on the GPU
        mparams.split_mode = SPLIT_MODES.index(p.split_mode)
        mparams.main_gpu = p.main_gpu
        # llama-bench's default is AUTO (mmap unless a device cannot map); -mmp 1/0 forces mapping or reading.
        mparams.load_mode = {"auto": ll.LLAMA_LOAD_MODE_AUTO, "mmap": ll.LLAMA_LOAD_MODE_MMAP,
                             "none": ll.LLAMA_LOAD_MODE_NONE}[p.load_mode]
        if p.tensor_split:
            n_dev = int(ll.llama_max_devices())
            shares = list(p.tensor_split)[:n_dev] + [0.0] * max(0, n_dev - len(p.tensor_split))
            self._tensor_split = (ctypes.c_float * n_dev)(*shares)  # must outlive the load
            mparams.tensor_split = self._tensor_split
        if self.estimate is not None and p.use_mmap is False:
            try:
                self.estimate.check_weights(job.tests[0] if job.tests else BenchTest(1, 0), f"Reading {job.model_path.name} into memory (-mmp 0)")
            except BenchmarkError as error:
                raise WorkerFailure(str(error)) from error
        fraction = cached_fraction(job.model_path)  # before the load: was the file already in the page cache?
        self.info.update(load_page_cache=page_cache_label(fraction),
                         load_cached_fraction=-1.0 if fraction is None else round(fraction, 4))
        self.llog.start_section("model")
        started = time.perf_counter_ns()
        self.model = ll.llama_model_load_from_file(str(job.model_path).encode(), mparams)
        load_ns = time.perf_counter_ns() - started
        if not self.model:
            reason = self.llog.last_error() or "llama.cpp gave no reason"
            raise WorkerFailure(f"llama.cpp could not load {job.model_path.name}: {reason}")
        mode = self.llog.load_mode or ("none" if p.use_mmap is False else "mmap")
        self.info.update(load_mode=p.load_mode, use_mmap=mode.startswith("mmap"))
        desc = ctypes.create_string_buffer(256)
        ll.llama_model_desc(self.model, desc, ctypes.sizeof(desc))
        vocab = ll.llama_model_get_vocab(self.model)
        self.vocab = vocab
        self.n_vocab = int(ll.llama_vocab_n_tokens(vocab))
        self.add_bos = bool(ll.llama_vocab_get_add_bos(vocab))
        self.bos = int(ll.llama_vocab_bos(vocab))
        self.n_ctx_train = int(ll.llama_model_n_ctx_train(self.model))
        self.info.update(model_type=desc.value.decode("utf-8", "replace"), model_size=int(ll.llama_model_size(self.model)),
                         model_n_params=int(ll.llama_model_n_params(self.model)), load_ms=load_ns / 1e6)

    def new_context(self, n_ctx: int, label: str, test: BenchTest | None = None, *, n_seq_max: int = 1,
                    kv_unified: bool = False) -> Any:
        ll, p = self.ll, self.job.params
        if self.estimate is not None:
            try:  # before llama.cpp allocates: a context the free memory cannot hold is refused with numbers
                self.estimate.check_host(test or BenchTest(n_ctx, 0), f"{label} (context of {n_ctx} tokens)")
            except BenchmarkError as error:
                raise BenchTestFailure(str(error)) from error
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = p.n_batch
        cparams.n_ubatch = p.n_ubatch
        cparams.n_threads = p.n_threads
        cparams.n_threads_batch = p.n_threads
        cparams.type_k = GGML_TYPES[p.type_k]
        cparams.type_v = GGML_TYPES[p.type_v]
        cparams.flash_attn_type = FLASH_ATTN[p.flash_attn]
        cparams.swa_full = False  # as llama-bench sets it
        cparams.no_perf = not self.perf  # llama.cpp's own counters only for the overhead benchmark
        cparams.offload_kqv = not p.no_kv_offload
        cparams.n_seq_max = n_seq_max  # several sequences for batched decoding and serving slots
        cparams.kv_unified = kv_unified
        self.llog.start_section("context")
        ctx = ll.llama_init_from_model(self.model, cparams)
        if not ctx:
            reason = self.llog.last_error() or "llama.cpp gave no reason"
            raise BenchTestFailure(f"llama.cpp could not create a context for {label} (n_ctx {n_ctx}): {reason}")
        if self.pools is not None:
            try:  # llama-bench's threadpool: its mask, strictness, polling and priority
                tpp = self.pools.params(p.n_threads, cpu_mask=p.cpu_mask, cpu_strict=p.cpu_strict, poll=p.poll,
                                        prio=self.job.prio)
                self._pool = self.pools.attach(ctx, tpp)
            except ThreadpoolError as error:
                ll.llama_free(ctx)
                raise BenchTestFailure(str(error)) from error
        return ctx

    def free_context(self, ctx: Any) -> None:
        """Free the context, then its threadpool (llama-bench's order)."""
        self.ll.llama_free(ctx)
        if self._pool and self.pools is not None:
            self.pools.release(None, self._pool)
        self._pool = 0

    def fill_depth(self, ctx: Any, test: BenchTest, progress: Any, rep: int) -> None:
        """The context filled to the test's depth: the saved state when there is one for this depth, else a prefill
        whose state is saved (llama-bench's llama_state_seq_get_data/set_data). Never timed."""
        ll = self.ll
        if self._depth_state is not None and self._depth_state[0] == test.n_depth:
            buf = self._depth_state[1]
            if ll.llama_state_seq_set_data(ctx, buf, len(buf), 0) != 0:
                return
            # 0: the saved state does not suit this context; prefill again, as llama-bench does
        progress("depth", rep)
        self.decode_chunks(ctx, self.prompt_chunks(test.n_depth))
        size = int(ll.llama_state_seq_get_size(ctx, 0))
        buf = (ctypes.c_uint8 * size)()
        ll.llama_state_seq_get_data(ctx, buf, size, 0)
        self._depth_state = (test.n_depth, buf)

    # -- llama-bench's two timed primitives --
    def chunks(self, ids: list[int]) -> list[tuple[Any, int]]:
        """Token ids as ctypes arrays of at most n_batch, built before any timer starts."""
        n_batch = self.job.params.n_batch
        return [((ctypes.c_int32 * len(ids[i:i + n_batch]))(*ids[i:i + n_batch]), len(ids[i:i + n_batch]))
                for i in range(0, len(ids), n_batch)]

    def prompt_chunks(self, n_prompt: int) -> list[tuple[Any, int]]:
        """Random token ids for a prompt in n_batch chunks (BOS first when the vocab adds one)."""
        ids = [self.rng.randrange(self.n_vocab) for _ in range(n_prompt)]
        if ids and self.add_bos:
            ids[0] = self.bos
        return self.chunks(ids)

    def decode_chunks(self, ctx: Any, chunks: list[tuple[Any, int]]) -> None:
        ll = self.ll
        for array, n in chunks:
            res = ll.llama_decode(ctx, ll.llama_batch_get_one(array, n))
            if res != 0:
                raise BenchTestFailure(f"llama_decode failed on a prompt batch of {n} tokens (code {res}).")
        ll.llama_synchronize(ctx)

    def generate(self, ctx: Any, n_gen: int) -> None:
        """One token per decode with a synchronize after each, random next token, no sampling."""
        ll = self.ll
        first = self.bos if self.add_bos else self.rng.randrange(self.n_vocab)
        ids = [first] + [self.rng.randrange(self.n_vocab) for _ in range(n_gen - 1)]
        one = (ctypes.c_int32 * 1)()
        # The batch points at `one`, so one batch serves every step: one ctypes call less per token.
        batch = ll.llama_batch_get_one(one, 1)
        decode, synchronize = ll.llama_decode, ll.llama_synchronize
        for token in ids:
            one[0] = token
            res = decode(ctx, batch)
            if res != 0:
                raise BenchTestFailure(f"llama_decode failed while generating (code {res}).")
            synchronize(ctx)

    # -- one test --
    def run_test(self, test: BenchTest, index: int, n_tests: int) -> BenchResult:
        ll, job = self.ll, self.job
        result = blank_result(job, test)
        if test.n_ctx > self.n_ctx_train > 0:
            raise BenchTestFailure(f"{test.name} needs a context of {test.n_ctx} tokens, beyond the model's training "
                              f"context of {self.n_ctx_train}.")
        vram_before = self.gpu_free()
        ctx = self.new_context(test.n_ctx, test.name, test)
        try:
            result.vram_used = max(0, sum(b - a for b, a in zip(vram_before, self.gpu_free())))
            mem = ll.llama_get_memory(ctx)
            plan = job.adaptive  # -r auto: repeat until the interval is tight enough, `reps` is then the cap
            reps = plan.max_reps if plan is not None else job.repetitions

            def progress(phase: str, rep: int) -> None:
                share = {"rep": rep / (reps + 1), "depth": rep / (reps + 1), "done": 1.0}.get(phase, 0.0)
                done = index + share
                self.emit("progress", test=test.name, phase=phase, rep=rep, of=reps, fraction=done / n_tests)

            ll.llama_memory_clear(mem, False)
            if self.job.delay:  # llama-bench's --delay: let the machine cool before the test
                time.sleep(self.job.delay)
            progress("warmup", 0)
            if test.n_prompt > 0:
                self.decode_chunks(ctx, self.prompt_chunks(test.n_prompt))
            if test.n_gen > 0:
                self.generate(ctx, 1)
            self.memory()  # after the warm-up: the context's buffers are touched
            samples: list[int] = []
            tokens = test.n_prompt + test.n_gen
            # A garbage collection pass inside a timed repetition would be charged to llama.cpp.
            gc.collect()
            gc.disable()
            for rep in range(reps):
                # llama-bench clears without zeroing the buffers (data=false); nothing here is timed.
                ll.llama_memory_clear(mem, False)
                if test.n_depth > 0:
                    self.fill_depth(ctx, test, progress, rep)
                chunks = self.prompt_chunks(test.n_prompt) if test.n_prompt > 0 else []
                if self.perf:
                    ll.llama_perf_context_reset(ctx)
                progress("rep", rep)
                self.llog.quiet(True)  # inside the timed region llama.cpp's log costs nothing but errors
                try:
                    started = time.perf_counter_ns()
                    if chunks:
                        self.decode_chunks(ctx, chunks)
                    if test.n_gen > 0:
                        self.generate(ctx, test.n_gen)
                    ns = time.perf_counter_ns() - started
                finally:
                    self.llog.quiet(False)
                samples.append(ns)
                extra: dict[str, Any] = {}
                if self.perf:
                    counters = ll.llama_perf_context(ctx)
                    extra["perf"] = {"t_p_eval_ms": counters.t_p_eval_ms, "t_eval_ms": counters.t_eval_ms,
                                     "n_p_eval": counters.n_p_eval, "n_eval": counters.n_eval}
                self.emit("sample", test=test.name, rep=rep, ns=ns, ts=1e9 * (test.n_prompt + test.n_gen) / ns,
                          **extra)
                self.memory()  # between repetitions (the parent no longer polls during them)
                self.maybe_fault()
                if plan is not None and plan.done(rates(samples, tokens), sum(samples) / 1e9):
                    break
            progress("done", reps)
        finally:
            gc.enable()
            self.free_context(ctx)
        summary = summarize(samples, test.n_prompt + test.n_gen)
        result.avg_ns, result.stddev_ns = summary.avg_ns, summary.stddev_ns
        result.avg_ts, result.stddev_ts = summary.avg_ts, summary.stddev_ts
        result.samples_ns, result.samples_ts = summary.samples_ns, summary.samples_ts
        for key, value in interval_fields(summary.samples_ts, job.adaptive).items():
            setattr(result, key, value)
        self.fill_common(result)
        return result

    def fill_common(self, result: BenchResult, *, measured: bool = True) -> None:
        for key, value in self.info.items():
            setattr(result, key, value)
        if not measured:  # a failed test carries what was known before it ran, never figures
            return
        memory = process_memory()
        if memory is not None:
            result.mem_rss_anon, result.mem_rss_file, result.mem_peak = memory.rss_anon, memory.rss_file, memory.peak
        result.buffers = self.llog.buffers()
        totals = self.llog.buffer_totals()
        result.buf_model, result.buf_kv = totals["model"], totals["KV"]
        result.buf_compute, result.buf_output = totals["compute"], totals["output"]

    def maybe_fault(self) -> None:
        if self._fault == "segfault":
            ctypes.string_at(0)
        elif self._fault == "abort":
            os.abort()
        elif self._fault == "exit":
            os._exit(3)

    # -- devices --
    def gpu_free(self) -> list[int]:
        """Free memory per GPU device, bytes (empty without a GPU backend)."""
        return [free for free, _total in self.llog.devices.gpu_memory()]


def run_job(job: BenchJob, emit: Emitter, *, perf: bool = False) -> int:
    """Run every test of the job; returns the exit code (0 when the job ran, even if some tests failed)."""
    emit("started", job=job.to_json(), pid=os.getpid())
    llog: LlamaLog | None = None
    try:
        check_model_file(job.model_path)
        emit("progress", test="", phase="load", rep=0, of=job.repetitions, fraction=0.0)
        try:
            from models.machine.probe_worker import import_bindings

            # The ctypes bindings, even where the package body's numpy/jinja2 are missing (a bare GPU machine).
            llama_cpp = import_bindings([])
        except Exception as error:  # a missing or broken native library must still be reported, not crash
            raise WorkerFailure(f"llama-cpp-python cannot be loaded: {error}") from error
        llog = LlamaLog(llama_cpp, emit)
        llama_cpp.llama_backend_init()
        common = build_info(llama_cpp, llog.devices)
        pools = prepare_process(llama_cpp, job, emit, gpu=bool(common["gpu_info"]))
        estimate = fit_estimator(job, gpu=bool(common["gpu_info"]), emit=emit)
        bench = Bench(llama_cpp, job, emit, llog, perf=perf, pools=pools, estimate=estimate)
        bench.info.update(common)
        if job.params.rpc:  # llama-bench's -rpc: probe each server, then its devices join llama.cpp's
            from models.machine.rpc_attach import RpcError, attach_rpc

            try:
                bench.info.update(attach_rpc(llama_cpp, job.params.rpc, emit=emit, backends=common["backends"]))
            except RpcError as error:
                raise WorkerFailure(str(error)) from error
        bench.load()
        bench.memory()  # after the load
        if job.ttft_prompt_tokens > 0:
            from models.bench.ttft import measure_ttft

            try:
                bench.info.update(measure_ttft(bench, job.ttft_prompt_tokens))
            except BenchTestFailure as error:
                emit("log", level="warning", message=f"Time to first token not measured: {error}")
        method = {"batched": _run_batched, "load": _run_load, "quality": _run_quality,
                  "answers": _run_answers}.get(job.method)
        if method is not None:
            ok = method(bench, emit)
            llama_cpp.llama_model_free(bench.model)
            emit("finished", ok=ok)
            return 0
        ok = True
        for index, test in enumerate(job.tests):
            try:
                result = bench.run_test(test, index, len(job.tests))
                result.fit_estimate = estimate(test)
            except BenchTestFailure as error:
                ok = False
                result = blank_result(job, test, status="failed", error=str(error))
                bench.fill_common(result, measured=False)
            emit("result", result=result.to_json())
        llama_cpp.llama_model_free(bench.model)
        emit("finished", ok=ok)
        return 0
    except WorkerFailure as error:
        emit("failure", message=str(error), detail="", log_tail=llog.tail() if llog else [])
        emit("finished", ok=False)
        return 1
    except Exception as error:  # anything unexpected is still a failure event, never a silent exit
        emit("failure", message=f"The benchmark worker failed: {error}", detail=traceback.format_exc(),
             log_tail=llog.tail() if llog else [])
        emit("finished", ok=False)
        return 1


def _run_batched(bench: Bench, emit: Emitter) -> bool:
    from models.bench.capacity.batched import run_batched_job

    assert bench.job.batched is not None
    return run_batched_job(bench, bench.job.batched, emit)


def _run_load(bench: Bench, emit: Emitter) -> bool:
    from models.bench.capacity.continuous import run_load_job

    return run_load_job(bench, bench.job.load, emit)


def _run_quality(bench: Bench, emit: Emitter) -> bool:
    from models.bench.quality.job import quality_context, run_quality

    job, p = bench.job, bench.job.params
    assert job.quality is not None

    def context(shape: Any) -> Any:
        return quality_context(bench.ll, bench.model, shape, n_threads=p.n_threads, n_ubatch=p.n_ubatch,
                               type_k=p.type_k, type_v=p.type_v, flash_attn=p.flash_attn,
                               offload_kqv=not p.no_kv_offload)

    try:
        run_quality(bench.ll, bench.model, job.quality, n_batch=p.n_batch, emit=emit, context=context,
                    meta={"model_filename": str(job.model_path), **{k: bench.info.get(k, "") for k in
                          ("model_type", "build_commit", "backends")}})
    except BenchmarkError as error:
        raise WorkerFailure(str(error)) from error
    return True


def _run_answers(bench: Bench, emit: Emitter) -> bool:
    from models.bench.quality.answers import answers_context, run_answers

    job, p = bench.job, bench.job.params
    assert job.answers is not None
    try:
        run_answers(bench.ll, bench.model, job.answers, n_batch=p.n_batch, emit=emit,
                    context=lambda n_ctx: answers_context(bench.ll, bench.model, n_ctx, n_batch=p.n_batch,
                                                          n_threads=p.n_threads),
                    meta={"model_filename": str(job.model_path), **{k: bench.info.get(k, "") for k in
                          ("model_type", "build_commit", "backends")}})
    except BenchmarkError as error:
        raise WorkerFailure(str(error)) from error
    return True


def _read_job(args: argparse.Namespace) -> BenchJob:
    if args.job:
        text = Path(args.job[1:]).read_text() if args.job.startswith("@") else args.job
    else:
        # One line: the runner keeps stdin open afterwards, and its end means the runner is gone.
        text = sys.stdin.readline()
        watch_stdin(sys.stdin)
    return BenchJob.from_json(json.loads(text))


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m models.bench.worker [--job JSON|@FILE] [--perf]` (else the job is read from stdin)."""
    parser = argparse.ArgumentParser(prog="python -m models.bench.worker")
    parser.add_argument("--job", help="the BenchJob as JSON, or @FILE")
    parser.add_argument("--perf", action="store_true", help="also report llama.cpp's own timers per sample")
    args = parser.parse_args(argv)
    # Keep the protocol stream to ourselves: anything native code prints on stdout goes to stderr instead.
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    emit = Emitter(os.fdopen(events_fd, "w", encoding="utf-8", buffering=1))
    faulthandler.enable()  # a segfault in llama.cpp leaves a Python traceback in the log tail
    die_with_parent()  # Linux: SIGKILL when the runner dies, however it dies
    try:
        job = _read_job(args)
    except (OSError, ValueError, KeyError, TypeError) as error:
        emit("failure", message=f"The worker received an unreadable job: {error}", detail="", log_tail=[])
        emit("finished", ok=False)
        return 2
    return run_job(job, emit, perf=args.perf)


if __name__ == "__main__":
    sys.exit(main())
