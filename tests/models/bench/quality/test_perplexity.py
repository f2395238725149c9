"""Perplexity and KL divergence (llama-perplexity's method) on the real starter model and a real second quant of it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.bench.quality.reference import expected_size, read_reference, row_len, scored_per_chunk
from models.bench.quality.perplexity import QualityCancelled, QualityShape, piece_bytes, tokenize_text
from models.bench.quality.job import QualityPlan, quality_context, run_quality
from models.errors import BenchmarkError

TEXT = Path(__file__).parents[1] / "data" / "public_domain.txt"
C = 64  # tokens per chunk: small, so a run is a few hundred tokens on one thread


@pytest.fixture(scope="module")
def ll() -> Any:
    import llama_cpp

    quiet = llama_cpp.llama_log_callback(lambda level, text, user: None)
    llama_cpp.llama_log_set(quiet, None)
    llama_cpp.llama_backend_init()
    llama_cpp._tokenometer_quiet = quiet  # keep the callback alive for the module
    return llama_cpp


def _load(ll: Any, path: Path, *, overrides: Any = None) -> Any:
    params = ll.llama_model_default_params()
    if overrides is not None:
        params.kv_overrides = overrides
    model = ll.llama_model_load_from_file(str(path).encode(), params)
    assert model
    return model


@pytest.fixture(scope="module")
def starter(ll: Any, starter_model: Path) -> Iterator[Any]:
    model = _load(ll, starter_model)
    yield model
    ll.llama_model_free(model)


@pytest.fixture(scope="module")
def requantized(ll: Any, starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Q4_0 of the starter (Q4_1), written by llama.cpp's quantize API: same vocabulary, other weights."""
    path = tmp_path_factory.mktemp("quant") / "starter-Q4_0.gguf"
    params = ll.llama_model_quantize_default_params()
    params.ftype = ll.LLAMA_FTYPE_MOSTLY_Q4_0
    params.allow_requantize = True
    params.nthread = 1
    assert ll.llama_model_quantize(str(starter_model).encode(), str(path).encode(), params) == 0
    model = _load(ll, path)
    yield model
    ll.llama_model_free(model)


def _context(ll: Any, model: Any) -> Any:
    return lambda shape: quality_context(ll, model, shape, n_threads=1)


def _run(ll: Any, model: Any, plan: QualityPlan, *, n_batch: int = 4 * C, **options: Any) -> Any:
    return run_quality(ll, model, plan, n_batch=n_batch, context=_context(ll, model), **options)


def _plain_nll(ll: Any, model: Any, tokens: np.ndarray, *, n_ctx: int, n_chunk: int, bos: int | None) -> list[float]:
    """The definition, computed another way: each chunk alone in one decode, float64 log-softmax of every logit."""
    shape = QualityShape(n_ctx=n_ctx, n_seq=1, n_batch=n_ctx)
    ctx = quality_context(ll, model, shape, n_threads=1)
    n_vocab = ll.llama_vocab_n_tokens(ll.llama_model_get_vocab(model))
    values: list[float] = []
    for chunk in range(n_chunk):
        ids = [int(t) for t in tokens[chunk * n_ctx:(chunk + 1) * n_ctx]]
        if bos is not None:
            ids[0] = bos
        ll.llama_memory_clear(ll.llama_get_memory(ctx), True)
        full = ll.llama_batch_init(n_ctx, 0, 1)
        for i, token in enumerate(ids):
            full.token[i], full.pos[i], full.n_seq_id[i], full.logits[i] = token, i, 1, True
            full.seq_id[i][0] = 0
        full.n_tokens = n_ctx
        assert ll.llama_decode(ctx, full) == 0
        logits = np.ctypeslib.as_array(ll.llama_get_logits(ctx), shape=(n_ctx * n_vocab,)).reshape(n_ctx, n_vocab)
        logits = logits.astype(np.float64)
        for pos in range(n_ctx // 2, n_ctx - 1):
            row = logits[pos]
            top = row.max()
            values.append(-(row[tokens[chunk * n_ctx + pos + 1]] - top - math.log(np.exp(row - top).sum())))
        ll.llama_batch_free(full)
    ll.llama_free(ctx)
    return values


def test_perplexity_is_the_second_half_of_each_chunk_scored(ll: Any, starter: Any) -> None:
    plan = QualityPlan(text=str(TEXT), n_ctx=C, n_chunks=3)
    result = _run(ll, starter, plan, n_batch=C)  # one chunk per decode, as the plain computation does
    tokens = tokenize_text(ll, ll.llama_model_get_vocab(starter), TEXT.read_text())
    nll = _plain_nll(ll, starter, tokens, n_ctx=C, n_chunk=3, bos=None)
    assert result.n_scored == len(nll) == 3 * (C - 1 - C // 2)
    mean = sum(nll) / len(nll)
    assert result.ppl == pytest.approx(math.exp(mean), rel=1e-4)
    # perplexity.cpp's ± : PPL * sqrt(var(NLL) / (N - 1))
    sd = math.sqrt(sum(v * v for v in nll) / len(nll) - mean * mean)
    assert result.ppl_err == pytest.approx(math.exp(mean) * sd / math.sqrt(len(nll) - 1), rel=1e-3)
    assert (result.n_chunk, result.n_seq, result.n_tokens) == (3, 1, len(tokens))


def test_sequences_side_by_side_and_slices_score_the_same_tokens(ll: Any, starter: Any) -> None:
    plan = QualityPlan(text=str(TEXT), n_ctx=C, n_chunks=4)
    together = _run(ll, starter, plan, n_batch=4 * C)  # four chunks in one decode, four sequences
    alone = _run(ll, starter, plan, n_batch=C)  # one chunk per decode
    sliced = _run(ll, starter, plan, n_batch=C // 2)  # each chunk in two decodes, logits gathered across them
    assert (together.n_seq, alone.n_seq, sliced.n_seq) == (4, 1, 1)
    assert together.n_scored == alone.n_scored == sliced.n_scored == 4 * scored_per_chunk(C)
    # Each sequence sees only its own chunk: side by side gives what one at a time gives.
    assert together.ppl == pytest.approx(alone.ppl, rel=1e-4)
    # Micro-batches under 64 tokens take another matmul path in llama.cpp; llama-perplexity built from the same
    # sources gives the same two figures for -c 64 --chunks 4 with -b 256 and -b 32 (16.9729 and 16.5826 here).
    assert sliced.ppl == pytest.approx(alone.ppl, rel=0.05)
    assert sliced.token_sha256 == alone.token_sha256


def test_bos_replaces_each_chunks_first_token_when_the_vocabulary_adds_one(ll: Any, starter_model: Path) -> None:
    # The starter does not add BOS; a real override of its metadata (as llama.cpp's --override-kv) makes it.
    override = (ll.llama_model_kv_override * 2)()
    override[0].key = b"tokenizer.ggml.add_bos_token"
    override[0].tag = ll.LLAMA_KV_OVERRIDE_TYPE_BOOL
    override[0].value.val_bool = True
    model = _load(ll, starter_model, overrides=override)
    try:
        vocab = ll.llama_model_get_vocab(model)
        assert ll.llama_vocab_get_add_bos(vocab)
        tokens = tokenize_text(ll, vocab, TEXT.read_text())
        assert tokens[0] == ll.llama_vocab_bos(vocab)
        result = _run(ll, model, QualityPlan(text=str(TEXT), n_ctx=C, n_chunks=2), n_batch=C)
        nll = _plain_nll(ll, model, tokens, n_ctx=C, n_chunk=2, bos=ll.llama_vocab_bos(vocab))
        assert result.ppl == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-4)
    finally:
        ll.llama_model_free(model)


def test_bits_per_byte_counts_the_utf8_bytes_of_the_scored_tokens(ll: Any, starter: Any) -> None:
    vocab = ll.llama_model_get_vocab(starter)
    tokens = tokenize_text(ll, vocab, TEXT.read_text())
    assert piece_bytes(ll, vocab, tokens) == len(TEXT.read_bytes())  # the pieces are the text, byte for byte
    result = _run(ll, starter, QualityPlan(text=str(TEXT), n_ctx=C, n_chunks=2))
    scored = np.concatenate([tokens[c * C + C // 2 + 1:(c + 1) * C] for c in range(2)])
    assert result.scored_bytes == piece_bytes(ll, vocab, scored)
    assert result.bits_per_byte == pytest.approx(result.nll * result.n_scored / math.log(2) / result.scored_bytes)


def test_reference_of_a_model_against_itself_is_zero_and_another_quant_is_not(
        ll: Any, starter: Any, requantized: Any, tmp_path: Path) -> None:
    ref = tmp_path / "starter.kld"
    base = _run(ll, starter, QualityPlan(text=str(TEXT), n_ctx=C, n_chunks=4, save_reference=str(ref)),
                meta={"model": "starter"})
    info = read_reference(ref)
    assert (info.n_ctx, info.n_chunk, info.n_vocab) == (C, 4, 49152)
    assert info.meta["model"] == "starter" and info.meta["token_sha256"] == base.token_sha256
    assert ref.stat().st_size > expected_size(C, 49152, 4)  # llama-perplexity's layout, then our trailer
    assert not ref.with_name(ref.name + ".part").exists()

    same = _run(ll, starter, QualityPlan(text=str(TEXT), reference=str(ref)))
    assert same.kld is not None
    assert same.kld["kld_mean"] < 1e-3  # only the uint16 rounding of the reference
    assert same.kld["same_top"] == 1.0
    assert same.kld["ppl_base"] == pytest.approx(base.ppl, rel=1e-3)
    assert same.ppl == pytest.approx(base.ppl, rel=1e-6)

    other = _run(ll, requantized, QualityPlan(text=str(TEXT), reference=str(ref)))
    k = other.kld
    assert k is not None and other.n_chunk == 4 and other.n_ctx == C
    assert k["kld_mean"] > 0.01 and k["kld_err"] > 0
    assert 0 <= k["kld_min"] <= k["kld_median"] <= k["kld_p99"] <= k["kld_p999"] <= k["kld_max"]
    assert 0 < k["same_top"] < 1 and k["rms_dp"] > 0
    assert k["ppl_base"] == pytest.approx(base.ppl, rel=1e-3)
    assert k["ln_ppl_ratio"] == pytest.approx(math.log(other.ppl / base.ppl), rel=1e-6)


def test_scoring_threads_change_nothing_but_the_time(ll: Any, starter: Any, requantized: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are scored in slices on a pool and folded in row order: one thread or four give the same bytes."""
    import models.bench.quality.perplexity as perplexity

    monkeypatch.setattr(perplexity, "ROW_SLICE", 8)  # many slices per chunk, so the pool really splits them
    runs = []
    for threads in (1, 4):
        monkeypatch.setattr(perplexity, "scoring_threads", lambda threads=threads: threads)
        ref = tmp_path / f"ref-{threads}.kld"
        base = _run(ll, starter, QualityPlan(text=str(TEXT), n_ctx=C, n_chunks=3, save_reference=str(ref)))
        other = _run(ll, requantized, QualityPlan(text=str(TEXT), reference=str(ref)))
        runs.append((ref.read_bytes(), base.ppl, other.ppl, other.kld))
    assert runs[0] == runs[1]
    assert runs[0][3] is not None and runs[0][3]["kld_mean"] > 0.01


def test_chunks_stream_as_events_and_a_cancel_leaves_no_reference(ll: Any, starter: Any, tmp_path: Path) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    ref = tmp_path / "cut.kld"
    with pytest.raises(QualityCancelled):
        _run(ll, starter, QualityPlan(text=str(TEXT), n_ctx=C, n_chunks=4, save_reference=str(ref)), n_batch=C,
             emit=lambda kind, **data: events.append((kind, data)),
             should_stop=lambda: sum(kind == "quality_chunk" for kind, _ in events) >= 2)
    chunks = [data for kind, data in events if kind == "quality_chunk"]
    assert [(c["chunk"], c["of"]) for c in chunks] == [(1, 4), (2, 4)]
    assert chunks[1]["ppl"] > 1 and chunks[1]["fraction"] == 0.5
    assert not ref.exists() and not ref.with_name(ref.name + ".part").exists()
    assert not any(kind == "quality" for kind, _ in events)


def test_row_layout_is_llama_perplexity_s() -> None:
    # 49152 tokens -> 49152 + 4 uint16 per row; an odd vocabulary is padded to even.
    assert row_len(49152) == 49156 and row_len(7) == 12
    assert scored_per_chunk(512) == 255 and scored_per_chunk(C) == 31
    assert expected_size(4, 7, 2) == 20 + 4 * 8 + 2 * 2 * 1 * 12
