"""A second quant of the starter model, written by llama.cpp's quantize API, for tests that compare quants."""

from __future__ import annotations

from pathlib import Path

import pytest

_KEEP: list[object] = []


@pytest.fixture(scope="session")
def q8_0(starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Q8_0 of the starter (Q4_1), requantized with allow_requantize: the larger quant, used as the reference."""
    import llama_cpp as ll

    quiet = ll.llama_log_callback(lambda level, text, user: None)
    ll.llama_log_set(quiet, None)
    _KEEP.append(quiet)  # llama.cpp keeps calling it: it must outlive the fixture
    path = tmp_path_factory.mktemp("choice-quant") / "SmolLM2-135M-Instruct-Q8_0.gguf"
    params = ll.llama_model_quantize_default_params()
    params.ftype = ll.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    assert ll.llama_model_quantize(str(starter_model).encode(), str(path).encode(), params) == 0
    return path
