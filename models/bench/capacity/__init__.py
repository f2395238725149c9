"""Capacity: batched decoding as llama-batched-bench measures it, and the serving load test (in-process or an endpoint)."""
