"""In the worker: time to first token for a real chat prompt of about N tokens, rendered with the model's template.

What it measures: the templated prompt's prefill plus sampling the first token (greedy), after one untimed warm-up,
on a fresh sequence each time. This is not LocalScore's TTFT (a random-token prompt's prefill plus one decode
step): compare the two only with that in mind.
"""

from __future__ import annotations

import ctypes
import logging
import math
import time
from typing import Any

log = logging.getLogger(__name__)


def tokenize(llama: Any, vocab: Any, text: str, *, special: bool) -> list[int]:
    """Token ids of `text`; `special` adds BOS/EOS as the vocab wants and parses special tokens."""
    data = text.encode("utf-8")
    capacity = len(data) + 16
    buf = (ctypes.c_int32 * capacity)()
    n = llama.llama_tokenize(vocab, data, len(data), buf, capacity, special, special)
    if n < 0:  # the buffer was too small; llama.cpp says how large it must be
        capacity = -n
        buf = (ctypes.c_int32 * capacity)()
        n = llama.llama_tokenize(vocab, data, len(data), buf, capacity, special, special)
    return list(buf[:max(n, 0)])


def render_chat(llama: Any, model: Any, user_text: str) -> str | None:
    """The user message wrapped in the model's chat template with the assistant turn opened, or None.

    llama.cpp's built-in template matcher is used rather than Jinja: it runs no code from the file.
    """
    template = llama.llama_model_chat_template(model, None)
    if not template:
        return None
    messages = (llama.llama_chat_message * 1)()
    messages[0].role = b"user"
    messages[0].content = user_text.encode("utf-8")
    size = 2 * len(user_text.encode("utf-8")) + 1024
    for _ in range(2):
        buf = ctypes.create_string_buffer(size)
        n = llama.llama_chat_apply_template(template, messages, 1, True, buf, size)
        if n < 0:
            return None
        if n <= size:
            return buf.raw[:n].decode("utf-8", "replace")
        size = n + 1
    return None


def chat_prompt_tokens(llama: Any, model: Any, vocab: Any, text: str, n_tokens: int) -> list[int]:
    """Tokens of a templated chat prompt whose user message repeats `text` to reach about `n_tokens` in all."""
    def prompt_for(n_words: int) -> list[int]:
        words = (text.split() * (1 + n_words // max(1, len(text.split()))))[:max(1, n_words)]
        user = " ".join(words)
        rendered = render_chat(llama, model, user)
        return tokenize(llama, vocab, rendered if rendered is not None else user, special=True)

    overhead = len(prompt_for(1)) - 1
    words_per_token = len(text.split()) / max(1, len(tokenize(llama, vocab, text, special=False)))
    n_words = max(1, math.floor((n_tokens - overhead) * words_per_token))
    tokens = prompt_for(n_words)
    # One proportional correction gets within a few tokens of the target; exactness does not matter here.
    if len(tokens) != n_tokens and len(tokens) > overhead:
        n_words = max(1, round(n_words * (n_tokens - overhead) / (len(tokens) - overhead)))
        tokens = prompt_for(n_words)
    return tokens


# A plain English passage for the time-to-first-token prompt; repeated to reach the asked length.
TTFT_TEXT = (
    "The river town kept its market on the old stone bridge, where farmers sold apples, bread and wool "
    "every Saturday morning. When the spring floods came, the traders moved their stalls up the hill to "
    "the church square, and the children carried baskets between the two places all day. Summarize how "
    "the market changed with the seasons, and suggest two ways the town could protect the bridge. "
)


def measure_ttft(bench: Any, n_tokens: int) -> dict[str, Any]:
    """Time to first token on the worker's loaded model (a models.bench.worker.Bench): mean and every timed run."""
    from models.bench.spec import BenchTest
    from models.bench.worker import BenchTestFailure

    ll = bench.ll
    tokens = chat_prompt_tokens(ll, bench.model, bench.vocab, TTFT_TEXT, n_tokens)
    n = len(tokens)
    n_ctx = n + 8
    if n_ctx > bench.n_ctx_train > 0:
        raise BenchTestFailure(f"The TTFT prompt of {n} tokens does not fit the model's context of {bench.n_ctx_train}.")
    ctx = bench.new_context(n_ctx, "ttft", BenchTest(n_ctx, 0))
    sampler = ll.llama_sampler_init_greedy()
    chunks = bench.chunks(tokens)
    samples: list[float] = []
    reps = bench.job.repetitions
    try:
        mem = ll.llama_get_memory(ctx)
        for rep in range(reps + 1):  # the first run is a warmup
            ll.llama_memory_clear(mem, False)
            bench.emit("progress", test="ttft", phase="ttft", rep=rep, of=reps, fraction=0.0)
            bench.llog.quiet(True)
            try:
                started = time.perf_counter_ns()
                bench.decode_chunks(ctx, chunks)
                ll.llama_sampler_sample(sampler, ctx, -1)
                elapsed = time.perf_counter_ns() - started
            finally:
                bench.llog.quiet(False)
            if rep:
                samples.append(elapsed / 1e6)
    finally:
        ll.llama_sampler_free(sampler)
        bench.free_context(ctx)
    return {"ttft_ms": sum(samples) / len(samples), "ttft_samples_ms": samples, "ttft_prompt_tokens": n}
