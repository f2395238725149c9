"""The one child-process environment (benchmark worker, llama.cpp probe): this very package, unbuffered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from models.child import PROJECT_ROOT, child_env


def test_a_child_started_elsewhere_imports_this_very_package(tmp_path: Path) -> None:
    # No PYTHONPATH and another working folder, as when the app is started from a desktop launcher.
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env = child_env(base={**base, "PYTHONPATH": str(tmp_path)}, extra={"TOKENOMETER_TEST_MARK": "1"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(PROJECT_ROOT), str(tmp_path)]
    assert env["PYTHONUNBUFFERED"] == "1" and env["TOKENOMETER_TEST_MARK"] == "1"
    code = "import models, os; print(models.__file__, os.environ['TOKENOMETER_TEST_MARK'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout.split()
    assert Path(out[0]) == PROJECT_ROOT / "models" / "__init__.py" and out[1] == "1"
    assert child_env(base={})["PYTHONPATH"] == str(PROJECT_ROOT)  # no stray separator when none was set
