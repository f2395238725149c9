"""The starter model: found when present, refused when wrong, and a clear error when it cannot be fetched."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from models.hub import starter


def test_the_starter_model_is_the_known_gguf(starter_model: Path) -> None:
    assert starter_model.name == starter.STARTER_FILENAME
    assert starter_model.stat().st_size == starter.STARTER_SIZE
    with starter_model.open("rb") as handle:
        assert handle.read(4) == b"GGUF"
    digest = hashlib.sha256(starter_model.read_bytes()).hexdigest()
    assert digest == starter.STARTER_SHA256


def test_a_partial_file_is_not_taken_for_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENOMETER_STARTER_DIR", str(tmp_path))
    (tmp_path / starter.STARTER_FILENAME).write_bytes(b"GGUF" + b"\0" * 100)
    monkeypatch.setattr(starter, "_installed_package_copy", lambda: None)
    assert starter.starter_model_path() is None


def test_an_unreachable_index_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENOMETER_STARTER_DIR", str(tmp_path))
    monkeypatch.setattr(starter, "_installed_package_copy", lambda: None)
    # A closed port on loopback stands for an index that cannot be reached; pip retries nothing.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no machine-wide extra index or find-links
    with pytest.raises(starter.StarterModelError, match="Could not fetch the starter model"):
        starter.ensure_starter_model()
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left behind
