"""Where Tokenometer keeps things on disk: the only module that decides paths."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import platformdirs

log = logging.getLogger(__name__)

APP_NAME = "tokenometer"

# TOKENOMETER_HOME moves every file the app writes (tests use it to stay isolated).
_HOME_ENV = "TOKENOMETER_HOME"
# The starter model is shared by all homes so tests and a fresh home need not fetch it again.
_STARTER_ENV = "TOKENOMETER_STARTER_DIR"


def _folder(path: Path, create: bool) -> Path:
    # Folders are made only by the code that writes into them: a command that only reads (runs, models,
    # hardware, fit) must work with a home that does not exist on a read-only file system.
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(*, create: bool = False) -> Path:
    """The folder for the results database, settings and models the app owns (made when `create`)."""
    override = os.environ.get(_HOME_ENV)
    return _folder(Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
                   create)


def models_dir(*, create: bool = False) -> Path:
    """The folder for model files the app owns (imports, downloads to a non-HF location)."""
    return _folder(data_dir() / "models", create)


def starter_dir(*, create: bool = False) -> Path:
    """The folder that holds the starter model, shared across homes."""
    override = os.environ.get(_STARTER_ENV)
    path = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "starter"
    return _folder(path, create)


def results_db_path() -> Path:
    """The SQLite results store (its folder is made when the store is first written)."""
    return data_dir() / "results.sqlite3"


def settings_path() -> Path:
    """The JSON settings file."""
    return data_dir() / "settings.json"


def recovery_dir(*, create: bool = False) -> Path:
    """Results that could not be saved to the store, kept as importable JSONL reports."""
    return _folder(data_dir() / "recovered", create)


def downloads_state_dir(*, create: bool = False) -> Path:
    """Partial downloads and their resume state."""
    return _folder(data_dir() / "downloads", create)


def log_dir(*, create: bool = False) -> Path:
    """Log files (the app's own log and crashed workers' logs)."""
    path = Path(os.environ[_HOME_ENV]) / "logs" if os.environ.get(_HOME_ENV) else Path(
        platformdirs.user_log_dir(APP_NAME, appauthor=False))
    return _folder(path, create)
