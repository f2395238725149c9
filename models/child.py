"""The environment every Tokenometer child process (benchmark worker, llama.cpp probe) starts with."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # the folder that holds the `models` package


def child_env(*, extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment (or `base`) for a `python -m models...` child: the project first on PYTHONPATH,
    so the child runs this very package even when the project is not installed; unbuffered output, so its
    events arrive line by line; then `extra`."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env
