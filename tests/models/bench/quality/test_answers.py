"""Answers to one prompt on the real starter model: streamed pieces, seeded sampling, the chat template, refusals."""

from __future__ import annotations

from typing import Any

import pytest

from models.bench.quality.answers import AnswersPlan, answers_context, prompt_tokens, run_answers
from models.errors import BenchmarkError

PROMPT = "Write a haiku about a lighthouse in winter."


def _answer(loaded: tuple[Any, Any], plan: AnswersPlan, **options: Any) -> Any:
    ll, model = loaded
    return run_answers(ll, model, plan, n_threads=1, **options)


def test_the_answer_streams_and_its_figures_add_up(loaded: tuple[Any, Any]) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    answer = _answer(loaded, AnswersPlan(prompt=PROMPT, n_predict=12, temperature=0),
                     emit=lambda kind, **data: events.append((kind, data)), meta={"model_filename": "starter"})
    pieces = [data["text"] for kind, data in events if kind == "answer_piece"]
    assert "".join(pieces) == answer.text and answer.text.strip()
    assert [kind for kind, _ in events][-1] == "answer"
    final = events[-1][1]["result"]
    assert final["prompt"] == PROMPT and final["model_filename"] == "starter" and final["text"] == answer.text
    assert 1 <= answer.n_gen <= 12 and answer.stop in ("eos", "length")
    assert answer.stop == "eos" or answer.n_gen == 12
    assert answer.ttft_ms > 0 and answer.prompt_tps == pytest.approx(answer.n_prompt / (answer.ttft_ms / 1e3))
    assert answer.sampling == {"temperature": 0, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "seed": 1234,
                               "n_predict": 12, "chat_template": True}


def test_a_seed_gives_the_same_answer_and_another_seed_another(loaded: tuple[Any, Any]) -> None:
    # A high temperature spreads the choice over many tokens, so two seeds part within a few tokens.
    plan = AnswersPlan(prompt=PROMPT, n_predict=24, temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=7)
    first, again = _answer(loaded, plan), _answer(loaded, plan)
    other = _answer(loaded, AnswersPlan(**{**plan.to_json(), "seed": 8}))
    assert first.text == again.text and first.n_gen == again.n_gen
    assert other.text != first.text
    assert AnswersPlan.from_json(plan.to_json()) == plan


def test_the_chat_template_is_llama_cpps_and_can_be_left_out(loaded: tuple[Any, Any]) -> None:
    ll, model = loaded
    templated, used = prompt_tokens(ll, model, AnswersPlan(prompt=PROMPT))
    plain, unused = prompt_tokens(ll, model, AnswersPlan(prompt=PROMPT, chat=False))
    assert used and not unused
    vocab = ll.llama_model_get_vocab(model)
    im_start = [t for t in templated if ll.llama_vocab_is_control(vocab, t)]
    assert im_start and not any(ll.llama_vocab_is_control(vocab, t) for t in plain)  # <|im_start|> ... as tokens
    assert len(templated) > len(plain)


def test_a_cancel_stops_between_tokens(loaded: tuple[Any, Any]) -> None:
    seen: list[str] = []
    answer = _answer(loaded, AnswersPlan(prompt=PROMPT, n_predict=50, temperature=0),
                     emit=lambda kind, **data: seen.append(kind), should_stop=lambda: seen.count("answer_piece") >= 3)
    assert answer.stop == "cancelled" and answer.n_gen == 3


@pytest.mark.parametrize(("plan", "match"), [
    (AnswersPlan(prompt="  "), "prompt is empty"),
    (AnswersPlan(prompt=PROMPT, n_predict=0), "at least 1"),
    (AnswersPlan(prompt=PROMPT, temperature=-1), "temperature"),
    (AnswersPlan(prompt=PROMPT, top_p=0), "top-p"),
    (AnswersPlan(prompt=PROMPT, n_predict=10**7), "exceed the model's context of 8192"),
])
def test_bad_plans_are_refused_before_a_context_is_made(loaded: tuple[Any, Any], plan: AnswersPlan,
                                                        match: str) -> None:
    made: list[int] = []
    with pytest.raises(BenchmarkError, match=match):
        _answer(loaded, plan, context=lambda n_ctx: made.append(n_ctx))
    assert made == []


def test_a_context_too_small_is_named(loaded: tuple[Any, Any]) -> None:
    ll, model = loaded
    ctx = answers_context(ll, model, 16, n_batch=16, n_threads=1)
    try:
        from models.bench.quality.answers import generate

        n_ctx = ll.llama_n_ctx(ctx)  # llama.cpp rounds a context up (to 256 cells here)
        with pytest.raises(BenchmarkError, match=f"and {n_ctx} tokens to generate do not fit a context of {n_ctx}"):
            generate(ll, model, ctx, AnswersPlan(prompt=PROMPT, n_predict=n_ctx), n_batch=16)
    finally:
        ll.llama_free(ctx)
