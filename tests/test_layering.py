"""The import rules: the core never loads Qt, the GUI process never loads llama.cpp."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def _all_core_modules() -> str:
    return ("import pkgutil, importlib, models; "
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(models.__path__, 'models.') "
            "if not m.name.endswith('worker') and not m.name.endswith('__main__')]")


def test_core_imports_no_qt() -> None:
    loaded = _modules_after(_all_core_modules())
    assert not {m for m in loaded if m.split(".")[0] in {"PySide6", "shiboken6", "PyQt5", "PyQt6"}}


def test_core_imports_no_llama_cpp_outside_the_worker() -> None:
    loaded = _modules_after(_all_core_modules())
    assert "llama_cpp" not in loaded


def test_headless_cli_imports_no_qt() -> None:
    loaded = _modules_after("import desktop.launch, models.cli; models.cli.build_parser()")
    assert not {m for m in loaded if m.startswith("PySide6")}


def test_desktop_imports_no_llama_cpp() -> None:
    loaded = _modules_after(
        "import pkgutil, importlib, desktop; "
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(desktop.__path__, 'desktop.') "
        "if not m.name.endswith('__main__')]")
    assert "llama_cpp" not in loaded
    assert "PySide6.QtWidgets" in loaded  # the walk really reached the GUI modules
