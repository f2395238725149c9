"""Serving metrics (vLLM's definitions), load profiles, and continuous batching on the real starter model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.bench.capacity.continuous import SlotScheduler
from models.bench.capacity.profile import PROFILES, RequestShape, arrival_times, get_profile, profile_from_file
from models.bench.capacity.serving import RequestRecord, Slo, capacity_sentence, percentile, summarize_load
from models.errors import BenchmarkError


def test_percentile_matches_numpy_linear() -> None:
    values = [0.3, 1.0, 7.5, 2.25, 9.0, 4.0, 0.1]
    for q in (0, 10, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_request_metrics_follow_vllm_definitions() -> None:
    record = RequestRecord(prompt_tokens=10, max_tokens=4, sent_at=1.0, token_times=[1.5, 1.6, 1.8, 2.1],
                           finished_at=2.1)
    assert record.ttft == pytest.approx(0.5)
    assert record.e2e == pytest.approx(1.1)
    assert record.tpot == pytest.approx((1.1 - 0.5) / 3)  # the first token excluded
    assert record.itl == pytest.approx([0.1, 0.2, 0.3])


def test_summary_throughput_goodput_and_slo() -> None:
    fast = RequestRecord(10, 3, 0.0, [0.2, 0.3, 0.4], 0.4)
    slow = RequestRecord(20, 3, 0.0, [1.5, 1.6, 1.7], 1.7)
    broken = RequestRecord(5, 3, 0.0, [], None, error="connection dropped")
    slo = Slo(ttft=1.0, tpot=0.2, percentile=50)
    summary = summarize_load([fast, slow], duration_s=2.0, slo=slo, concurrency=2)
    assert summary.completed == 2 and summary.failed == 0
    assert summary.output_throughput == pytest.approx(6 / 2.0)
    assert summary.total_token_throughput == pytest.approx((30 + 6) / 2.0)
    assert summary.goodput == pytest.approx(1 / 2.0)  # only the fast request met the TTFT limit
    assert summary.ttft.median == pytest.approx(850.0)  # ms, halfway between 200 and 1500
    assert summary.slo_met  # the median TTFT (0.85 s) is within 1 s
    assert not summarize_load([fast, slow], duration_s=2.0, slo=Slo(ttft=1.0, percentile=90), concurrency=2).slo_met
    with_failure = summarize_load([fast, broken], duration_s=1.0, slo=Slo(), concurrency=2)
    assert with_failure.failed == 1 and not with_failure.slo_met and with_failure.errors == ["connection dropped"]


def test_capacity_sentence_names_the_largest_passing_level() -> None:
    def level(n: int, ttft: float) -> Any:
        records = [RequestRecord(10, 3, 0.0, [ttft, ttft + 0.1, ttft + 0.2], ttft + 0.2) for _ in range(n)]
        return summarize_load(records, duration_s=1.0, slo=Slo(ttft=1.0), concurrency=n)

    sentence = capacity_sentence([level(1, 0.1), level(2, 0.5), level(4, 2.0)], model="m", machine="here")
    assert "serves 2 people at once" in sentence and "10.0 t/s each" in sentence
    assert "does not meet" in capacity_sentence([level(1, 3.0)], model="m", machine="here")


def test_profiles_and_lengths_file(tmp_path: Path) -> None:
    shapes = PROFILES["chat"].draw(50, seed=3)
    assert shapes == PROFILES["chat"].draw(50, seed=3)
    assert all(128 <= s.prompt_tokens <= 512 and 64 <= s.output_tokens <= 256 for s in shapes)
    lengths = tmp_path / "mine.csv"
    lengths.write_text("prompt_tokens,output_tokens\n100,20\n300,40\n")
    profile = get_profile(str(lengths))
    assert profile.draw(3) == [RequestShape(100, 20), RequestShape(300, 40), RequestShape(100, 20)]
    assert profile.longest == 340
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt_tokens": 10, "output_tokens": 1e30}\n')
    with pytest.raises(BenchmarkError, match="row 1"):
        profile_from_file(bad)
    with pytest.raises(BenchmarkError, match="Unknown load profile"):
        get_profile("nonsense")


def test_poisson_arrivals_are_reproducible_and_average_the_rate() -> None:
    times = arrival_times(2000, rate=4.0, seed=1)
    assert times == arrival_times(2000, rate=4.0, seed=1)
    assert times[0] == 0.0 and all(b >= a for a, b in zip(times, times[1:]))
    assert times[-1] / (len(times) - 1) == pytest.approx(0.25, rel=0.1)
    assert arrival_times(3, rate=None) == [0.0, 0.0, 0.0]
    with pytest.raises(BenchmarkError):
        arrival_times(3, rate=0)


@pytest.fixture(scope="module")
def llama_context(starter_model: Path) -> Iterator[tuple[Any, Any, int]]:
    """A real llama.cpp context with 3 slots of 64 cells (in this process: the scheduler is plain llama.cpp calls)."""
    import llama_cpp as ll

    quiet = ll.llama_log_callback(lambda level, text, user: None)
    ll.llama_log_set(quiet, None)
    ll.llama_backend_init()
    model = ll.llama_model_load_from_file(str(starter_model).encode(), ll.llama_model_default_params())
    params = ll.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = 3 * 64, 32, 32, 3
    params.n_threads = params.n_threads_batch = 1
    ctx = ll.llama_init_from_model(model, params)
    n_vocab = ll.llama_vocab_n_tokens(ll.llama_model_get_vocab(model))
    yield ll, ctx, n_vocab
    ll.llama_free(ctx)
    ll.llama_model_free(model)
    del quiet


def test_slots_serve_every_request_and_free_their_cells(llama_context: tuple[Any, Any, int]) -> None:
    ll, ctx, n_vocab = llama_context
    scheduler = SlotScheduler(ll, ctx, slots=3, n_batch=32, n_vocab=n_vocab)
    scheduler.warm_up()
    # Seven requests through three slots: slots are reused, and a 40-token prompt needs two steps of 32.
    shapes = [RequestShape(40, 5), RequestShape(8, 3), RequestShape(12, 6), RequestShape(8, 1),
              RequestShape(20, 4), RequestShape(9, 2), RequestShape(30, 7)]
    records, duration = scheduler.run(shapes, arrival_times(len(shapes), rate=None), closed_loop=True)
    assert [r.output_tokens for r in records] == [s.output_tokens for s in shapes]
    assert all(r.ok for r in records) and duration > 0
    assert all(r.sent_at <= r.token_times[0] <= r.finished_at for r in records if r.finished_at is not None)
    # Requests 4.. had to wait for a slot: none is sent before the first of the first three has finished.
    first_finish = min(r.finished_at for r in records[:3] if r.finished_at is not None)
    assert all(r.sent_at >= first_finish for r in records[3:])
    mem = ll.llama_get_memory(ctx)
    assert [ll.llama_memory_seq_pos_max(mem, seq) for seq in range(3)] == [-1, -1, -1]  # every slot freed


def test_open_load_counts_the_wait_for_a_slot(llama_context: tuple[Any, Any, int]) -> None:
    ll, ctx, n_vocab = llama_context
    scheduler = SlotScheduler(ll, ctx, slots=1, n_batch=32, n_vocab=n_vocab)
    shapes = [RequestShape(16, 8), RequestShape(16, 8)]
    records, _ = scheduler.run(shapes, [0.0, 0.0], closed_loop=False)
    # Both arrive at once but one slot serves them in turn: the second's TTFT includes the first's whole life.
    assert records[1].sent_at == 0.0
    assert records[1].ttft is not None and records[0].e2e is not None and records[1].ttft > records[0].e2e
