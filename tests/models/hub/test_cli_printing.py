"""The Hub commands print names from the Hub as text: escape codes in repo and file names are shown, never run,
and a file whose name holds control characters is refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.cli import main
from tests.models.hub.hubserver import HubServer

ESC = "\x1b]0;owned\x07\x1b[2J"  # set the terminal's title, then clear the screen


def test_search_and_files_show_escape_codes_as_text(hub: HubServer, tiny_gguf: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    hub.add_repo(f"org/Evil{ESC}-GGUF", {"e-Q4_0.gguf": tiny_gguf})
    hub.add_repo("org/Plain-GGUF", {f"plain{ESC}-Q4_K_M.gguf": tiny_gguf})
    assert main(["search", "GGUF"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "org/Evil\\x1b]0;owned\\x07\\x1b[2J-GGUF" in out
    assert main(["files", "org/Plain-GGUF"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "plain\\x1b]0;owned\\x07\\x1b[2J-Q4_K_M.gguf" in out


def test_a_file_name_with_control_characters_is_refused(hub: HubServer, tiny_gguf: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    name = f"plain{ESC}-Q4_K_M.gguf"
    hub.add_repo("org/Plain-GGUF", {name: tiny_gguf})
    target = tmp_path / "into"
    target.mkdir()
    assert main(["download", "org/Plain-GGUF", "Q4_K_M", "--dir", str(target)]) == 1
    captured = capsys.readouterr()
    assert "holds control characters" in captured.err and "\x1b" not in captured.err + captured.out
    assert list(target.iterdir()) == [] and not hub.file_requests(name)  # refused before any byte was fetched
