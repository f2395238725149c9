"""Set up the project's virtual environment on demand, then run the app or the tests.

Usage:
    python3 dev.py run [ARGS...]    create .venv if needed, then start Tokenometer
    python3 dev.py test [ARGS...]   create .venv if needed, then run the test suite
    python3 dev.py install          create or update .venv only (rebuilds llama.cpp when its build flags changed)

llama-cpp-python is built from source with llama.cpp's RPC backend beside the CPU one
(-DGGML_RPC=on, for `tokenometer rpc-server` and `bench --rpc`). For a GPU backend, set
CMAKE_ARGS as for any llama-cpp-python build; the RPC flag is appended to it:
    CMAKE_ARGS="-DGGML_CUDA=on" python3 dev.py install

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


def llama_cmake_args(user: str | None = None) -> str:
    """The user's CMAKE_ARGS (a GPU backend, say) with llama.cpp's RPC backend turned on, unless they set it."""
    user = (os.environ.get("CMAKE_ARGS", "") if user is None else user).strip()
    if "GGML_RPC" in user:  # the user decided, on or off
        return user
    return f"{user} -DGGML_RPC=on".strip()


def _install_fingerprint() -> str:
    # Reinstall whenever the declared dependencies or llama.cpp's build flags change.
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + llama_cmake_args().encode()).hexdigest()


def _build_has_rpc(python: Path) -> bool:
    probe = "import sys, llama_cpp.llama_cpp as l; sys.exit(0 if l.llama_supports_rpc() else 1)"
    return subprocess.call([str(python), "-c", probe], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0


def install_llama(python: Path) -> None:
    """Build llama-cpp-python again with llama_cmake_args() when the installed one lacks the RPC backend (pip may
    have reused a wheel built before, without it)."""
    cmake_args = llama_cmake_args()
    if "-DGGML_RPC=on" not in cmake_args or _build_has_rpc(python):
        return
    print(f"Building llama-cpp-python with CMAKE_ARGS={cmake_args!r} (a few minutes) ...", flush=True)
    version = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('llama_cpp_python'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    subprocess.check_call([str(python), "-m", "pip", "install", "--force-reinstall", "--no-deps", "--no-cache-dir",
                           "--no-binary", "llama-cpp-python", f"llama-cpp-python=={version}"],
                          env={**os.environ, "CMAKE_ARGS": cmake_args})
    if not _build_has_rpc(python):
        sys.exit("llama-cpp-python was rebuilt but still has no RPC backend; check CMAKE_ARGS.")


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
        subprocess.check_call([str(python), "-m", "pip", "install", "-e", f"{ROOT}[test]"],
                              env={**os.environ, "CMAKE_ARGS": llama_cmake_args()})
        install_llama(python)
        STAMP.write_text(fingerprint)
    # The starter model makes the app useful offline; fetching it is a no-op once present.
    subprocess.check_call([str(python), "-m", "models.hub.starter"], cwd=ROOT)
    return python


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "install"}:
        print(__doc__)
        return 2
    python = ensure_environment()
    command, rest = argv[0], argv[1:]
    if command == "install":
        return 0
    if command == "run":
        return subprocess.call([str(python), "-m", "desktop.launch", *rest], cwd=ROOT)
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    return subprocess.call([str(python), "-m", "pytest", *rest], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
