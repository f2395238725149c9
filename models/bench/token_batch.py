"""A reusable llama_batch that is decoded in slices: shared by the batched, continuous and perplexity loops."""

from __future__ import annotations

import ctypes
from typing import Any


class TokenBatch:
    """A reusable llama_batch of up to `capacity` tokens, one sequence id each, that can be decoded in slices.

    Our own arrays rather than llama_batch_init: a slice of n_batch tokens is then a llama_batch whose pointers
    start part-way into the same arrays, as llama-batched-bench's get_sub_batch does, with nothing to free.
    """

    def __init__(self, llama: Any, capacity: int) -> None:
        self.ll = llama
        self.capacity = capacity
        self.size = 0
        self.token = (ctypes.c_int32 * capacity)()
        self.pos = (ctypes.c_int32 * capacity)()
        self.n_seq_id = (ctypes.c_int32 * capacity)(*([1] * capacity))
        self.seq_store = (ctypes.c_int32 * capacity)()
        base = ctypes.addressof(self.seq_store)
        self.seq_ptrs = (ctypes.POINTER(ctypes.c_int32) * capacity)(
            *(ctypes.cast(base + 4 * i, ctypes.POINTER(ctypes.c_int32)) for i in range(capacity)))
        self.logits = (ctypes.c_int8 * capacity)()

    def clear(self) -> None:
        self.size = 0

    def add(self, token: int, pos: int, seq: int, logits: bool) -> None:
        i = self.size
        self.token[i] = token
        self.pos[i] = pos
        self.seq_store[i] = seq
        self.logits[i] = 1 if logits else 0
        self.size = i + 1

    def view(self, start: int, count: int) -> Any:
        """A llama_batch over tokens start .. start + count - 1."""
        ll = self.ll

        def at(array: Any, item_size: int, kind: Any) -> Any:
            return ctypes.cast(ctypes.addressof(array) + start * item_size, ctypes.POINTER(kind))

        batch = ll.llama_batch()
        batch.n_tokens = count
        batch.token = at(self.token, 4, ctypes.c_int32)
        batch.embd = None
        batch.pos = at(self.pos, 4, ctypes.c_int32)
        batch.n_seq_id = at(self.n_seq_id, 4, ctypes.c_int32)
        batch.seq_id = at(self.seq_ptrs, ctypes.sizeof(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int32))
        batch.logits = at(self.logits, 1, ctypes.c_int8)
        return batch
