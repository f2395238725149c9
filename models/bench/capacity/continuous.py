"""Continuous batching on one llama.cpp context, scheduled like llama-server's slots, timing every request.

Up to `slots` requests are active at once, each in its own sequence. Every step decodes one token for each
generating sequence and fills the rest of the n_batch budget with prompt chunks of newly admitted requests
(llama-server's order); a finished request frees its slot and its KV cells, and the next waiting request
takes it. Tokens are random ids and nothing is sampled, as in llama-bench: speed does not depend on content.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from models.bench.capacity.batched import BatchedDecodeError
from models.bench.token_batch import TokenBatch
from models.bench.capacity.profile import RequestShape
from models.bench.capacity.serving import RequestRecord

log = logging.getLogger(__name__)


@dataclass
class _Active:
    record: RequestRecord
    shape: RequestShape
    prompt_done: int = 0
    generated: int = 0


class SlotScheduler:
    """Runs a list of requests through `slots` sequences of one context and records each request's timings."""

    def __init__(self, llama: Any, ctx: Any, *, slots: int, n_batch: int, n_vocab: int, seed: int = 1234,
                 clock: Callable[[], float] = time.perf_counter,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.ll = llama
        self.ctx = ctx
        self.slots = slots
        self.n_batch = n_batch
        self.n_vocab = n_vocab
        self.rng = random.Random(seed)
        self.clock = clock
        self.should_stop = should_stop
        self.mem = llama.llama_get_memory(ctx)
        self.batch = TokenBatch(llama, max(n_batch, slots))

    def warm_up(self) -> None:
        """One small untimed decode so first-use costs do not land on the first request."""
        batch = self.batch
        batch.clear()
        for i in range(min(16, self.n_batch)):
            batch.add(self.rng.randrange(self.n_vocab), i, 0, i == 15)
        self._decode(batch.size)
        self.ll.llama_memory_clear(self.mem, False)

    def _decode(self, count: int) -> None:
        code = self.ll.llama_decode(self.ctx, self.batch.view(0, count))
        if code != 0:
            raise BatchedDecodeError(f"llama_decode failed on a step of {count} tokens (code {code}); the KV cache "
                                     "is full or the batch is too large.")
        self.ll.llama_synchronize(self.ctx)

    def run(self, shapes: Sequence[RequestShape], arrivals: Sequence[float], *,
            closed_loop: bool) -> tuple[list[RequestRecord], float]:
        """Serve every request; returns the records and the level's duration (first send to last finish).

        closed_loop: `slots` clients each send their next request as soon as the previous one ends, so a request
        is sent when a slot takes it. Otherwise requests are sent at their arrival times and wait for a free slot
        (that wait counts in their TTFT, as it does against a server).
        """
        ll, mem, batch = self.ll, self.mem, self.batch
        waiting = deque(range(len(shapes)))
        records: list[RequestRecord | None] = [None] * len(shapes)
        active: dict[int, _Active] = {}
        free = list(range(self.slots - 1, -1, -1))
        start = self.clock()
        last_finish = start
        while (waiting or active) and not self.should_stop():
            now = self.clock() - start
            while waiting and free and (closed_loop or arrivals[waiting[0]] <= now):
                index = waiting.popleft()
                sent = now if closed_loop else arrivals[index]
                shape = shapes[index]
                record = RequestRecord(prompt_tokens=shape.prompt_tokens, max_tokens=shape.output_tokens,
                                       sent_at=sent)
                records[index] = record
                active[free.pop()] = _Active(record, shape)
            if not active:
                # Open load with nothing to do until the next arrival.
                time.sleep(max(0.0, min(arrivals[waiting[0]] - now, 0.05)))
                continue
            batch.clear()
            generating = [seq for seq, a in active.items() if a.prompt_done == a.shape.prompt_tokens]
            for seq in generating:
                a = active[seq]
                batch.add(self.rng.randrange(self.n_vocab), a.shape.prompt_tokens + a.generated - 1, seq, True)
            budget = self.n_batch - batch.size
            prefilled: list[int] = []
            for seq, a in active.items():
                if budget <= 0:
                    break
                if a.prompt_done == a.shape.prompt_tokens:
                    continue
                take = min(budget, a.shape.prompt_tokens - a.prompt_done)
                for pos in range(a.prompt_done, a.prompt_done + take):
                    batch.add(self.rng.randrange(self.n_vocab), pos, seq, pos == a.shape.prompt_tokens - 1)
                a.prompt_done += take
                budget -= take
                if a.prompt_done == a.shape.prompt_tokens:
                    prefilled.append(seq)
            self._decode(batch.size)
            now = self.clock() - start
            for seq in generating + prefilled:  # each of these produced one token in this step
                a = active[seq]
                a.generated += 1
                a.record.token_times.append(now)
                if a.generated >= a.shape.output_tokens:
                    a.record.finished_at = now
                    last_finish = start + now
                    ll.llama_memory_seq_rm(mem, seq, -1, -1)
                    del active[seq]
                    free.append(seq)
        for a in active.values():
            a.record.error = "cancelled"
        done = [r for r in records if r is not None]
        return done, max(0.0, last_finish - start)


def run_load_job(bench: Any, plan: Any, emit: Callable[..., None]) -> bool:
    """In the worker, with the model loaded: the capacity sweep (models.bench.capacity.sweep), each level on a fresh
    context of one slot per person, each level's figures and request timings sent as a "load_level" event."""
    from models.bench.capacity.sweep import run_sweep
    from models.bench.setup import WorkerFailure

    p = bench.job.params
    levels = plan.levels()
    done = {"levels": 0}

    def level(concurrency: int, rate: float | None, shapes: list[RequestShape],
              arrivals: list[float]) -> tuple[list[RequestRecord], float]:
        slots = concurrency if rate is None else plan.serving_slots
        longest = max(s.prompt_tokens + s.output_tokens for s in shapes)
        if bench.n_ctx_train and longest > bench.n_ctx_train:
            raise WorkerFailure(f"The profile's longest request needs {longest} tokens of context, beyond the model's "
                                f"training context of {bench.n_ctx_train}.")
        label = f"{slots} at once" + (f", {rate:g}/s" if rate is not None else "")
        emit("progress", test=label, phase="run", rep=done["levels"], of=len(levels),
             fraction=done["levels"] / len(levels))
        # Each slot gets n_ctx / slots cells (llama.cpp's per-sequence share without a unified cache).
        ctx = bench.new_context(slots * longest, label, n_seq_max=slots)
        try:
            scheduler = SlotScheduler(bench.ll, ctx, slots=slots, n_batch=p.n_batch, n_vocab=bench.n_vocab,
                                      seed=bench.job.seed)
            scheduler.warm_up()
            try:
                return scheduler.run(shapes, arrivals, closed_loop=rate is None)
            except BatchedDecodeError as error:
                raise WorkerFailure(str(error)) from error
        finally:
            bench.memory()  # with the level's context still allocated: its KV cells count
            bench.free_context(ctx)

    def on_level(summary: Any, records: list[RequestRecord]) -> None:
        done["levels"] += 1
        emit("load_level", summary=summary.to_json(), records=[r.to_json() for r in records])

    run_sweep(plan, level, on_level=on_level)
    return True
