"""Shared fixtures: an isolated app home per test, offscreen Qt, and the real starter model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests never reach the real Hub; a test that needs a Hub starts one on 127.0.0.1 and sets HF_ENDPOINT.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def starter_model() -> Path:
    """The real SmolLM2-135M-Instruct Q4_1 GGUF (fetched once by `dev.py`, or here if missing)."""
    from models.hub.starter import ensure_starter_model

    return ensure_starter_model()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes its settings, database and downloads under a fresh folder, and its own HF cache."""
    from models.paths import starter_dir

    # Resolve the shared starter folder before TOKENOMETER_HOME moves everything else.
    monkeypatch.setenv("TOKENOMETER_STARTER_DIR", str(starter_dir()))
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TOKENOMETER_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hf" / "hub"))
    return home
