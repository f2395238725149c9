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


def _log() -> tuple[object, list[dict]]:
    import llama_cpp

    from models.bench.llamalog import LlamaLog

    emitted: list[dict] = []
    return LlamaLog(llama_cpp, lambda kind, **data: emitted.append({"kind": kind, **data})), emitted


def test_debug_lines_are_dropped_at_once() -> None:
    log, emitted = _log()
    log._on_log(1, b"ggml_backend_cuda_graph_compute: CUDA graph reused\n", None)  # type: ignore[attr-defined]
    log._on_log(5, b" (continued)\n", None)  # type: ignore[attr-defined]  # CONT after a debug line is debug too
    log._on_log(2, b"llama_context: n_ctx = 512\n", None)  # type: ignore[attr-defined]
    assert [e["message"] for e in emitted] == ["llama_context: n_ctx = 512"]
    assert log.tail() == ["llama_context: n_ctx = 512"]  # type: ignore[attr-defined]


def test_quiet_mode_passes_only_errors() -> None:
    log, emitted = _log()
    log.quiet(True)  # type: ignore[attr-defined]
    log._on_log(2, b"an info line\n", None)  # type: ignore[attr-defined]
    log._on_log(3, b"a warning\n", None)  # type: ignore[attr-defined]
    log._on_log(4, b"ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate\n", None)  # type: ignore[attr-defined]
    assert [(e["level"], e["message"]) for e in emitted] == [
        ("error", "ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate")]
    log.quiet(False)  # type: ignore[attr-defined]
    log._on_log(2, b"after\n", None)  # type: ignore[attr-defined]
    assert emitted[-1]["message"] == "after"


def test_load_mode_is_read_from_the_log() -> None:
    log, _ = _log()
    log._on_log(2, b"load_tensors: loading model tensors, this can take a while... (load_mode = none)\n",  # type: ignore[attr-defined]
                None)
    assert log.load_mode == "none"  # type: ignore[attr-defined]
