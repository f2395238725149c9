"""Fixtures: a loopback Hub that the real huggingface_hub client talks to, and small GGUF files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.models.hub.hubserver import HubServer, make_gguf


@pytest.fixture
def hub(isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A started HubServer; HF_ENDPOINT points at it for this process and for any child process."""
    from huggingface_hub import constants

    server = HubServer().start()
    # huggingface_hub reads HF_ENDPOINT, HF_HUB_CACHE and the token path once, at import: set the env for
    # child processes and patch the already-imported constants for this one.
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", os.environ["HF_HUB_CACHE"])
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(isolated_home / "hf" / "token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # The library looks for other apps' models under HOME: an empty one per test.
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.delenv("LLAMA_CACHE", raising=False)
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    """A valid 'llama' GGUF of about 40 kB."""
    return make_gguf(tmp_path / "tiny-Q4_K_M.gguf", n_tensors=2, tensor_elems=4096)


@pytest.fixture
def big_gguf(tmp_path: Path) -> Path:
    """A valid GGUF of about 3 MB: big enough to cut a transfer in the middle."""
    return make_gguf(tmp_path / "big-Q8_0.gguf", name="big", n_tensors=3, tensor_elems=1024,
                     extra_bytes=3_000_000, file_type=7)
