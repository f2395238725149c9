"""Batched decoding measured as llama-batched-bench does: B sequences prefilled, then TG steps of B tokens each."""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from models.bench.token_batch import TokenBatch

log = logging.getLogger(__name__)

# llama-batched-bench's warm-up: 16 random tokens in sequence 0, decoded once.
WARMUP_TOKENS = 16


@dataclass(frozen=True)
class BatchedPlan:
    """What a batched job sweeps (llama-batched-bench's -npp -ntg -npl -pps -kvu -c); n_ctx 0 = just enough."""

    n_prompt: tuple[int, ...] = (128,)
    n_gen: tuple[int, ...] = (128,)
    n_parallel: tuple[int, ...] = (1, 2, 4, 8)
    pp_shared: bool = False
    kv_unified: bool = False
    n_ctx: int = 0

    def tests(self) -> list[BatchedTest]:
        return batched_tests(self.n_prompt, self.n_gen, self.n_parallel)

    def context(self) -> int:
        """The context to create: the user's n_ctx, or the smallest that runs every test."""
        return self.n_ctx or context_size(self.tests(), pp_shared=self.pp_shared, kv_unified=self.kv_unified)

    def problem(self) -> str | None:
        """Why this plan cannot run, in words, or None."""
        for name, values, least in (("prompt sizes (-npp)", self.n_prompt, 1), ("generation sizes (-ntg)", self.n_gen, 1),
                                    ("parallel sequences (-npl)", self.n_parallel, 1)):
            if not values:
                return f"The list of {name} is empty."
            if min(values) < least:
                return f"Every one of the {name} must be at least {least}, got {min(values)}."
        if self.n_ctx < 0:
            return f"The context size must be 0 (automatic) or more, got {self.n_ctx}."
        if self.n_ctx and not any(self.n_ctx >= t.n_kv(pp_shared=self.pp_shared, kv_unified=self.kv_unified)
                                  for t in self.tests()):
            return f"No test fits a context of {self.n_ctx} tokens; leave -c out to size it automatically."
        return None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchedPlan:
        return cls(n_prompt=tuple(int(v) for v in data["n_prompt"]), n_gen=tuple(int(v) for v in data["n_gen"]),
                   n_parallel=tuple(int(v) for v in data["n_parallel"]), pp_shared=bool(data.get("pp_shared")),
                   kv_unified=bool(data.get("kv_unified")), n_ctx=int(data.get("n_ctx", 0)))


class BatchedDecodeError(RuntimeError):
    """llama_decode refused a batch; the message says which."""


@dataclass(frozen=True)
class BatchedTest:
    """One point of the sweep: PP prompt tokens per sequence, TG generated per sequence, B sequences."""

    n_prompt: int
    n_gen: int
    n_parallel: int

    def n_kv(self, *, pp_shared: bool, kv_unified: bool) -> int:
        """KV cells the test fills (llama-batched-bench's N_KV and its n_ctx_req)."""
        if pp_shared:
            return (self.n_prompt if kv_unified else self.n_parallel * self.n_prompt) + self.n_parallel * self.n_gen
        return self.n_parallel * (self.n_prompt + self.n_gen)


@dataclass
class BatchedRow:
    """One test's figures under llama-batched-bench's jsonl names (seconds and tokens per second)."""

    pp: int
    tg: int
    pl: int
    n_kv: int
    t_pp: float
    speed_pp: float
    t_tg: float
    speed_tg: float
    t: float
    speed: float
    is_pp_shared: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def batched_tests(n_prompt: Sequence[int], n_gen: Sequence[int], n_parallel: Sequence[int]) -> list[BatchedTest]:
    """The cross product in llama-batched-bench's order: prompt sizes outermost, parallel sequences innermost."""
    return [BatchedTest(pp, tg, pl) for pp, tg, pl in itertools.product(n_prompt, n_gen, n_parallel)]


def context_size(tests: Sequence[BatchedTest], *, pp_shared: bool, kv_unified: bool) -> int:
    """The smallest n_ctx that runs every test.

    Without a unified cache llama.cpp gives each of the n_seq_max sequences n_ctx / n_seq_max cells, so the
    longest single sequence times the widest batch must fit as well as each test's total.
    """
    if not tests:
        return 0
    widest = max(t.n_parallel for t in tests)
    total = max(t.n_kv(pp_shared=pp_shared, kv_unified=kv_unified) for t in tests)
    if kv_unified:
        return total
    # A shared prompt lives in sequence 0 and is copied to the others, so each sequence holds pp + tg.
    per_sequence = max(t.n_prompt + t.n_gen for t in tests)
    return max(total, widest * per_sequence)


class BatchedBench:
    """llama-batched-bench's loop over one context whose n_seq_max is the widest batch of the sweep."""

    def __init__(self, llama: Any, ctx: Any, *, n_vocab: int, n_batch: int, seed: int = 1234) -> None:
        self.ll = llama
        self.ctx = ctx
        self.n_vocab = n_vocab
        self.n_batch = n_batch
        self.rng = random.Random(seed)
        self.mem = llama.llama_get_memory(ctx)
        self.n_kv_max = int(llama.llama_n_ctx(ctx))
        self._batch: TokenBatch | None = None

    def _tokens(self, capacity: int) -> TokenBatch:
        if self._batch is None or self._batch.capacity < capacity:
            self._batch = TokenBatch(self.ll, max(capacity, WARMUP_TOKENS))
        self._batch.clear()
        return self._batch

    def _random(self) -> int:
        return self.rng.randrange(self.n_vocab)

    def _decode(self, batch: TokenBatch, *, synchronize: bool) -> None:
        ll = self.ll
        for start in range(0, batch.size, self.n_batch):
            count = min(self.n_batch, batch.size - start)
            code = ll.llama_decode(self.ctx, batch.view(start, count))
            if code != 0:
                raise BatchedDecodeError(f"llama_decode failed on a batch of {count} tokens (code {code}); "
                                         f"the context may be too small for this test.")
            if synchronize:
                ll.llama_synchronize(self.ctx)

    def warm_up(self) -> None:
        self.ll.llama_memory_clear(self.mem, False)  # llama-batched-bench warms a fresh context; ours may be reused
        batch = self._tokens(WARMUP_TOKENS)
        for i in range(WARMUP_TOKENS):
            batch.add(self._random(), i, 0, False)
        self._decode(batch, synchronize=True)

    def fits(self, test: BatchedTest, *, pp_shared: bool, kv_unified: bool) -> bool:
        """llama-batched-bench skips a test whose cells exceed the context; so do we (the caller reports it)."""
        return test.n_kv(pp_shared=pp_shared, kv_unified=kv_unified) <= self.n_kv_max

    def measure(self, test: BatchedTest, *, pp_shared: bool = False, kv_unified: bool = False) -> BatchedRow:
        """One test: the prompts decoded in n_batch slices (one synchronize), then TG steps of B tokens."""
        ll, mem = self.ll, self.mem
        pp, tg, pl = test.n_prompt, test.n_gen, test.n_parallel
        prompts = 1 if pp_shared else pl
        batch = self._tokens(max(prompts * pp, pl))
        for seq in range(prompts):
            for i in range(pp):
                batch.add(self._random(), i, seq, i == pp - 1)
        ll.llama_memory_clear(mem, False)

        started = time.perf_counter_ns()
        self._decode(batch, synchronize=False)
        ll.llama_synchronize(self.ctx)
        pp_ns = time.perf_counter_ns() - started

        if pp_shared:
            for seq in range(1, pl):
                ll.llama_memory_seq_cp(mem, 0, seq, -1, -1)
            if not kv_unified:
                # As llama-batched-bench: one untimed token applies the copy, then is removed again.
                batch.clear()
                batch.add(self._random(), pp, 0, True)
                self._decode(batch, synchronize=True)
                ll.llama_memory_seq_rm(mem, 0, pp, -1)

        started = time.perf_counter_ns()
        for i in range(tg):
            batch.clear()
            for seq in range(pl):
                batch.add(self._random(), pp + i, seq, True)
            self._decode(batch, synchronize=True)
        tg_ns = time.perf_counter_ns() - started

        t_pp, t_tg = pp_ns / 1e9, tg_ns / 1e9
        prompt_tokens = pp if pp_shared else pl * pp
        total = t_pp + t_tg
        return BatchedRow(
            pp=pp, tg=tg, pl=pl, n_kv=test.n_kv(pp_shared=pp_shared, kv_unified=kv_unified),
            t_pp=t_pp, speed_pp=prompt_tokens / t_pp if t_pp > 0 else 0.0,
            t_tg=t_tg, speed_tg=pl * tg / t_tg if t_tg > 0 else 0.0,
            t=total, speed=(prompt_tokens + pl * tg) / total if total > 0 else 0.0, is_pp_shared=pp_shared)

    def run(self, tests: Sequence[BatchedTest], *, pp_shared: bool = False, kv_unified: bool = False,
            on_row: Callable[[int, BatchedTest, BatchedRow | None], None] | None = None,
            on_start: Callable[[int, BatchedTest], None] | None = None) -> list[BatchedRow]:
        """Warm up once, then every test in order; a test that does not fit is passed to on_row as None."""
        self.warm_up()
        rows: list[BatchedRow] = []
        for index, test in enumerate(tests):
            if on_start:
                on_start(index, test)
            if not self.fits(test, pp_shared=pp_shared, kv_unified=kv_unified):
                if on_row:
                    on_row(index, test, None)
                continue
            row = self.measure(test, pp_shared=pp_shared, kv_unified=kv_unified)
            rows.append(row)
            if on_row:
                on_row(index, test, row)
        return rows


def run_batched_job(bench: Any, plan: BatchedPlan, emit: Callable[..., None]) -> bool:
    """In the worker, with the model loaded: one context whose n_seq_max is the widest batch, then every test;
    each row goes out as a "batched" event as soon as it is measured. Returns True when every test ran."""
    from models.bench.capacity.batched_output import record
    from models.bench.setup import WorkerFailure

    job, p = bench.job, bench.job.params
    tests = plan.tests()
    widest = max(t.n_parallel for t in tests)
    ctx = bench.new_context(plan.context(), "the batched sweep", n_seq_max=widest, kv_unified=plan.kv_unified)
    try:
        runner = BatchedBench(bench.ll, ctx, n_vocab=bench.n_vocab, n_batch=p.n_batch, seed=job.seed)
        settings = {"n_kv_max": runner.n_kv_max, "n_batch": p.n_batch, "n_ubatch": p.n_ubatch,
                    "flash_attn": {"auto": -1, "off": 0, "on": 1}[p.flash_attn], "is_pp_shared": int(plan.pp_shared),
                    "n_gpu_layers": p.n_gpu_layers, "n_threads": p.n_threads, "n_threads_batch": p.n_threads,
                    "model_filename": str(job.model_path), "model_type": bench.info.get("model_type", ""),
                    "build_commit": bench.info.get("build_commit", ""), "backends": bench.info.get("backends", ""),
                    "kv_unified": int(plan.kv_unified)}
        skipped: list[str] = []

        def label(test: BatchedTest) -> str:
            return f"pp{test.n_prompt}+tg{test.n_gen} x{test.n_parallel}"

        def on_start(index: int, test: BatchedTest) -> None:
            emit("progress", test=label(test), phase="run", rep=index, of=len(tests), fraction=index / len(tests))

        def on_row(index: int, test: BatchedTest, row: BatchedRow | None) -> None:
            if row is None:
                skipped.append(label(test))
            bench.memory()  # first, so the row's memory figures are its own
            emit("batched", test=label(test), row=record(row.to_json(), settings) if row else None)

        try:
            runner.run(tests, pp_shared=plan.pp_shared, kv_unified=plan.kv_unified, on_row=on_row,
                       on_start=on_start)
        except BatchedDecodeError as error:
            raise WorkerFailure(str(error)) from error
        return not skipped
    finally:
        bench.free_context(ctx)
