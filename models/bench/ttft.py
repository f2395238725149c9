"""In the worker: a real chat prompt of about N tokens, rendered with the model's template by llama.cpp itself."""

from __future__ import annotations

import ctypes
import logging
import math
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
