"""Set up the project's virtual environment on demand, then run the app or the tests.

Usage:
    python3 dev.py run [ARGS...]    create .venv if needed, then start Tokenometer
    python3 dev.py test [ARGS...]   create .venv if needed, then run the test suite

Only the standard library is used here, so this works on a fresh machine with
nothing but Python 3.10+.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("TOKENOMETER_VENV", ROOT / ".venv"))
STAMP = VENV / ".tokenometer-installed"


def _venv_python() -> Path:
    if os.name == "nt":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def _install_fingerprint() -> str:
    # Reinstall whenever the declared dependencies change.
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_environment() -> Path:
    """Create the venv and install the project with its test extra, once per pyproject change."""
    if sys.version_info < (3, 10):
        sys.exit(f"Tokenometer needs Python 3.10 or newer; this is {sys.version.split()[0]}.")
    python = _venv_python()
    if not python.exists():
        print(f"Creating the virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    fingerprint = _install_fingerprint()
    if not STAMP.exists() or STAMP.read_text().strip() != fingerprint:
        print("Installing Tokenometer and its dependencies (llama.cpp builds from source: a few minutes) ...",
              flush=True)
        subprocess.check_call([str(python), "-m", "pip", "install", "--upgrade", "pip"])
        subprocess.check_call([str(python), "-m", "pip", "install", "-e", f"{ROOT}[test]"])
        STAMP.write_text(fingerprint)
    # The starter model makes the app useful offline; fetching it is a no-op once present.
    subprocess.check_call([str(python), "-m", "models.hub.starter"], cwd=ROOT)
    return python


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test"}:
        print(__doc__)
        return 2
    python = ensure_environment()
    command, rest = argv[0], argv[1:]
    if command == "run":
        return subprocess.call([str(python), "-m", "desktop.launch", *rest], cwd=ROOT)
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    return subprocess.call([str(python), "-m", "pytest", *rest], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
