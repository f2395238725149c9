"""One prompt answered by a loaded model, streamed token by token with its TTFT and speed (the side-by-side view).

The prompt is wrapped in the model's chat template by llama.cpp's own template matcher (no template code from
the file is run), as the TTFT test does. Sampling is llama.cpp's default chain (top-k, top-p, min-p, temperature,
then a seeded draw; greedy at temperature 0), and the settings and seed travel with the answer.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from models.bench.ttft import render_chat, tokenize
from models.errors import BenchmarkError

log = logging.getLogger(__name__)

Emit = Callable[..., None]

# A few prompts to pick from; short, so small models answer them within a few hundred tokens.
SAMPLE_PROMPTS = (
    "Explain in three sentences why the sky is blue.",
    "Write a haiku about a lighthouse in winter.",
    "A train leaves at 14:10 and arrives at 17:45. How long is the journey? Show your reasoning briefly.",
    "Give three tips for writing a clear e-mail to a busy colleague.",
)


@dataclass(frozen=True)
class AnswersPlan:
    """The prompt and how to sample; llama.cpp's defaults (llama-cli's) unless told otherwise."""

    prompt: str
    n_predict: int = 256
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    seed: int = 1234
    chat: bool = True  # wrap the prompt in the model's chat template when it has one

    def problem(self) -> str | None:
        if not self.prompt.strip():
            return "The prompt is empty."
        if self.n_predict < 1:
            return f"The number of tokens to generate must be at least 1, got {self.n_predict}."
        if self.temperature < 0:
            return f"The temperature must be 0 (greedy) or more, got {self.temperature}."
        if not 0 < self.top_p <= 1 or not 0 <= self.min_p < 1 or self.top_k < 0:
            return "top-p must be in (0, 1], min-p in [0, 1) and top-k 0 (off) or more."
        if not 0 <= self.seed < 2**32:
            return f"The seed must be 0 .. 4294967295, got {self.seed}."
        return None

    def sampling(self) -> dict[str, Any]:
        """The settings shown beside each answer and saved with it."""
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p, "min_p": self.min_p,
                "seed": self.seed, "n_predict": self.n_predict, "chat_template": self.chat}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnswersPlan:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Answer:
    """One model's answer and its figures."""

    text: str
    n_prompt: int
    n_gen: int
    ttft_ms: float  # the templated prompt's prefill plus the first token's sampling
    prompt_tps: float
    gen_tps: float  # tokens after the first, per second
    stop: str  # "eos" (the model ended its turn), "length" (n_predict reached) or "cancelled"
    templated: bool  # False: the model has no template llama.cpp knows; the prompt went in as plain text
    sampling: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _sampler(ll: Any, plan: AnswersPlan) -> Any:
    chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
    if plan.temperature <= 0:
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
        return chain
    if plan.top_k > 0:
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(plan.top_k))
    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(plan.top_p, 1))
    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_min_p(plan.min_p, 1))
    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(plan.temperature))
    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(plan.seed))
    return chain


def prompt_tokens(ll: Any, model: Any, plan: AnswersPlan) -> tuple[list[int], bool]:
    """The prompt's tokens and whether the chat template wrapped it."""
    vocab = ll.llama_model_get_vocab(model)
    rendered = render_chat(ll, model, plan.prompt) if plan.chat else None
    return tokenize(ll, vocab, rendered if rendered is not None else plan.prompt, special=True), rendered is not None


def generate(ll: Any, model: Any, ctx: Any, plan: AnswersPlan, *, n_batch: int, emit: Emit | None = None,
             should_stop: Callable[[], bool] = lambda: False) -> Answer:
    """Prefill the prompt, then sample up to n_predict tokens, emitting each piece of text as it comes."""
    emit = emit or (lambda kind, **data: None)
    vocab = ll.llama_model_get_vocab(model)
    tokens, templated = prompt_tokens(ll, model, plan)
    n_ctx = int(ll.llama_n_ctx(ctx))
    if len(tokens) + plan.n_predict > n_ctx:
        raise BenchmarkError(f"The prompt ({len(tokens)} tokens) and {plan.n_predict} tokens to generate do not fit "
                             f"a context of {n_ctx}.")
    ll.llama_memory_clear(ll.llama_get_memory(ctx), True)
    sampler = _sampler(ll, plan)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span two tokens
    pieces: list[str] = []
    piece = ctypes.create_string_buffer(256)
    one = (ll.llama_token * 1)()
    stop = "length"
    try:
        started = time.perf_counter()
        for at in range(0, len(tokens), n_batch):
            chunk = (ll.llama_token * len(tokens[at:at + n_batch]))(*tokens[at:at + n_batch])  # alive past the decode
            if ll.llama_decode(ctx, ll.llama_batch_get_one(chunk, len(chunk))):
                raise BenchmarkError(f"llama_decode failed on the prompt ({len(tokens)} tokens).")
        n_gen = 0
        first_at = gen_from = 0.0
        while n_gen < plan.n_predict:
            if should_stop():
                stop = "cancelled"
                break
            token = ll.llama_sampler_sample(sampler, ctx, -1)
            if n_gen == 0:
                first_at = gen_from = time.perf_counter()
            n_gen += 1
            if ll.llama_vocab_is_eog(vocab, token):
                stop = "eos"
                break
            n = ll.llama_token_to_piece(vocab, token, piece, len(piece), 0, False)
            text = decoder.decode(piece.raw[:max(0, n)])
            if text:
                pieces.append(text)
                emit("answer_piece", text=text, n=n_gen)
            if n_gen == plan.n_predict:
                break
            one[0] = token
            if ll.llama_decode(ctx, ll.llama_batch_get_one(one, 1)):
                raise BenchmarkError(f"llama_decode failed after {n_gen} generated tokens (the context is full?).")
        ended = time.perf_counter()
    finally:
        ll.llama_sampler_free(sampler)
    tail = decoder.decode(b"", final=True)
    if tail:
        pieces.append(tail)
        emit("answer_piece", text=tail, n=n_gen)
    prefill_s = (first_at or ended) - started
    gen_s = ended - gen_from if gen_from else 0.0
    return Answer(text="".join(pieces), n_prompt=len(tokens), n_gen=n_gen, ttft_ms=1e3 * prefill_s,
                  prompt_tps=len(tokens) / prefill_s if prefill_s > 0 else 0.0,
                  gen_tps=(n_gen - 1) / gen_s if n_gen > 1 and gen_s > 0 else 0.0, stop=stop, templated=templated,
                  sampling=plan.sampling())


def answers_context(ll: Any, model: Any, n_ctx: int, *, n_batch: int, n_threads: int) -> Any:
    params = ll.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = params.n_ubatch = min(n_batch, n_ctx)
    params.n_threads = params.n_threads_batch = n_threads
    ctx = ll.llama_init_from_model(model, params)
    if not ctx:
        raise BenchmarkError(f"llama.cpp could not create a context of {n_ctx} tokens for the answer.")
    return ctx


def run_answers(ll: Any, model: Any, plan: AnswersPlan, *, n_batch: int = 2048, emit: Emit | None = None,
                should_stop: Callable[[], bool] = lambda: False, meta: dict[str, Any] | None = None,
                context: Callable[[int], Any] | None = None, n_threads: int = 0) -> Answer:
    """Refuse a bad plan, make a context just large enough, answer, and emit the "answer" event."""
    problem = plan.problem()
    if problem:
        raise BenchmarkError(problem)
    emit = emit or (lambda kind, **data: None)
    tokens, _ = prompt_tokens(ll, model, plan)
    n_ctx = len(tokens) + plan.n_predict
    n_train = int(ll.llama_model_n_ctx_train(model))
    if 0 < n_train < n_ctx:
        raise BenchmarkError(f"The prompt ({len(tokens)} tokens) and {plan.n_predict} tokens to generate exceed "
                             f"the model's context of {n_train}.")
    if context is None:
        from models.bench.cores import cpu_get_num_math

        ctx = answers_context(ll, model, n_ctx, n_batch=n_batch, n_threads=n_threads or cpu_get_num_math())
    else:
        ctx = context(n_ctx)
    try:
        answer = generate(ll, model, ctx, plan, n_batch=min(n_batch, n_ctx), emit=emit, should_stop=should_stop)
    finally:
        ll.llama_free(ctx)
    emit("answer", result={**(meta or {}), **answer.to_json(), "prompt": plan.prompt})
    return answer


def figures(result: dict[str, Any]) -> str:
    """One line of an answer's figures (TTFT, prompt and generation speed, why it stopped)."""
    return (f"TTFT {result.get('ttft_ms', 0):.0f} ms | prompt {result.get('n_prompt', 0)} tokens at "
            f"{result.get('prompt_tps', 0):.1f} t/s | {result.get('n_gen', 0)} tokens at {result.get('gen_tps', 0):.1f}"
            f" t/s | stop: {result.get('stop', '')}" + ("" if result.get("templated", True) else " | no chat template"))
