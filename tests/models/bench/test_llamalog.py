"""llama.cpp's logged buffer sizes are parsed from its real line formats."""

from __future__ import annotations

import pytest

from models.bench.llamalog import parse_buffer_line


@pytest.mark.parametrize(("line", "expected"), [
    ("load_tensors:   CPU_Mapped model buffer size =    72.00 MiB", ("CPU_Mapped", "model", 72 * 1024 * 1024)),
    ("llama_kv_cache:        CPU KV buffer size =     5.62 MiB", ("CPU", "KV", round(5.62 * 1024 * 1024))),
    ("llama_context:        CPU compute buffer size =    66.50 MiB", ("CPU", "compute", round(66.5 * 1048576))),
    ("llama_context:        CPU  output buffer size =     0.19 MiB", ("CPU", "output", round(0.19 * 1048576))),
    ("load_tensors:        CUDA0 model buffer size =  4096.00 MiB", ("CUDA0", "model", 4096 * 1048576)),
])
def test_buffer_lines(line: str, expected: tuple[str, str, int]) -> None:
    assert parse_buffer_line(line) == expected


def test_other_lines_are_not_buffers() -> None:
    assert parse_buffer_line("print_info: model type = 135M") is None
    assert parse_buffer_line("llama_context: n_ctx = 512") is None
