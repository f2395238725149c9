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


def data_dir() -> Path:
    """The folder for the results database, settings and models the app owns."""
    override = os.environ.get(_HOME_ENV)
    path = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """The folder for model files the app owns (imports, downloads to a non-HF location)."""
    path = data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def starter_dir() -> Path:
    """The folder that holds the starter model, shared across homes."""
    override = os.environ.get(_STARTER_ENV)
    path = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "starter"
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_db_path() -> Path:
    """The SQLite results store."""
    return data_dir() / "results.sqlite3"


def settings_path() -> Path:
    """The JSON settings file."""
    return data_dir() / "settings.json"


def downloads_state_dir() -> Path:
    """Partial downloads and their resume state."""
    path = data_dir() / "downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_dir() -> Path:
    """Log files (the app's own log and crashed workers' logs)."""
    path = Path(os.environ[_HOME_ENV]) / "logs" if os.environ.get(_HOME_ENV) else Path(
        platformdirs.user_log_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path
