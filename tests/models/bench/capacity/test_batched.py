"""Batched decoding (llama-batched-bench's method) on the real starter model, and its sizing rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models.bench.capacity.batched import BatchedBench, BatchedTest, batched_tests, context_size


def test_sweep_order_matches_llama_batched_bench() -> None:
    tests = batched_tests([128, 256], [32], [1, 4])
    assert [(t.n_prompt, t.n_gen, t.n_parallel) for t in tests] == [
        (128, 32, 1), (128, 32, 4), (256, 32, 1), (256, 32, 4)]


@pytest.mark.parametrize(("shared", "unified", "expected"), [
    (False, False, 4 * (100 + 10)),  # every sequence its own prompt
    (True, False, 4 * 100 + 4 * 10),  # one prompt, copied into each sequence's own cells
    (True, True, 100 + 4 * 10),  # one prompt whose cells all sequences share
])
def test_kv_cells_per_test(shared: bool, unified: bool, expected: int) -> None:
    assert BatchedTest(100, 10, 4).n_kv(pp_shared=shared, kv_unified=unified) == expected


def test_context_holds_the_longest_sequence_in_every_slot() -> None:
    # Without a unified cache each of the 4 slots gets n_ctx / 4 cells: 4 * 400 even though pl=1 needs only 400.
    tests = batched_tests([390], [10], [1]) + batched_tests([16], [4], [4])
    assert context_size(tests, pp_shared=False, kv_unified=False) == 4 * 400
    assert context_size(tests, pp_shared=False, kv_unified=True) == 400
    assert context_size([], pp_shared=False, kv_unified=False) == 0


@pytest.fixture(scope="module")
def llama_context(starter_model: Path) -> Iterator[tuple[Any, Any, Any, int]]:
    """A real llama.cpp context with 4 sequences (in this process: the method is plain calls, no worker needed)."""
    import llama_cpp as ll

    quiet = ll.llama_log_callback(lambda level, text, user: None)
    ll.llama_log_set(quiet, None)
    ll.llama_backend_init()
    model = ll.llama_model_load_from_file(str(starter_model).encode(), ll.llama_model_default_params())
    assert model
    params = ll.llama_context_default_params()
    params.n_ctx = 4 * 64
    params.n_batch = 32  # smaller than a 4 x 24-token prompt, so the prompt is decoded in slices
    params.n_ubatch = 32
    params.n_seq_max = 4
    params.n_threads = params.n_threads_batch = 1
    ctx = ll.llama_init_from_model(model, params)
    assert ctx
    n_vocab = ll.llama_vocab_n_tokens(ll.llama_model_get_vocab(model))
    yield ll, ctx, quiet, n_vocab
    ll.llama_free(ctx)
    ll.llama_model_free(model)


@pytest.mark.parametrize("shared", [False, True])
def test_every_sequence_is_decoded_to_its_full_length(llama_context: tuple[Any, Any, Any, int], shared: bool) -> None:
    ll, ctx, _quiet, n_vocab = llama_context
    bench = BatchedBench(ll, ctx, n_vocab=n_vocab, n_batch=32)
    tests = batched_tests([24], [5], [1, 4])
    seen: list[tuple[int, bool]] = []
    rows = bench.run(tests, pp_shared=shared, on_row=lambda i, t, row: seen.append((i, row is not None)))
    assert seen == [(0, True), (1, True)]
    wide = rows[-1]
    assert (wide.pp, wide.tg, wide.pl) == (24, 5, 4)
    assert wide.n_kv == tests[1].n_kv(pp_shared=shared, kv_unified=False)
    mem = ll.llama_get_memory(ctx)
    # Each of the 4 sequences holds its prompt plus its 5 generated positions: the batch really was 4 wide.
    assert [ll.llama_memory_seq_pos_max(mem, seq) for seq in range(4)] == [24 + 5 - 1] * 4
    prompt_tokens = 24 if shared else 4 * 24
    assert wide.speed_pp == pytest.approx(prompt_tokens / wide.t_pp)
    assert wide.speed_tg == pytest.approx(4 * 5 / wide.t_tg)
    assert wide.speed == pytest.approx((prompt_tokens + 20) / (wide.t_pp + wide.t_tg))


def test_a_test_beyond_the_context_is_skipped_not_run(llama_context: tuple[Any, Any, Any, int]) -> None:
    ll, ctx, _quiet, n_vocab = llama_context
    bench = BatchedBench(ll, ctx, n_vocab=n_vocab, n_batch=32)
    skipped: list[BatchedTest] = []
    rows = bench.run(batched_tests([200], [100], [4]), on_row=lambda i, t, row: row is None and skipped.append(t))
    assert rows == [] and skipped == [BatchedTest(200, 100, 4)]
