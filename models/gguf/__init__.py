"""GGUF files: the bounded header reader, ggml's type table, byte sources."""
