"""Fixtures of the quality tests: the starter model loaded in this process, llama.cpp's log silenced."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def loaded(starter_model: Path) -> Iterator[tuple[Any, Any]]:
    import llama_cpp as ll

    quiet = ll.llama_log_callback(lambda level, text, user: None)
    ll.llama_log_set(quiet, None)
    ll.llama_backend_init()
    model = ll.llama_model_load_from_file(str(starter_model).encode(), ll.llama_model_default_params())
    assert model
    yield ll, model
    ll.llama_model_free(model)
    del quiet
