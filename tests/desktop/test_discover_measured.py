"""Discover: a quant already measured here (real quality and bench runs of the starter) shows its measured speed
and quality beside its fit badge; the same file name in another repo, and an unmeasured quant, do not."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from desktop.discover_columns import FILE_COLUMNS
from models.cli import main
from models.hub.starter import STARTER_FILENAME, STARTER_REPO_ID
from tests.models.results.quants import q8_0  # noqa: F401

CTRL = Qt.KeyboardModifier.ControlModifier
TEXT = Path(__file__).parents[1] / "models" / "bench" / "data" / "public_domain.txt"
SPEED = [column.title for column in FILE_COLUMNS].index("Speed here")


def _files(window, qtbot, query: str, count: int):
    page = window.pages["discover"]
    page.search.clear()
    qtbot.keyClicks(page.search, query)
    qtbot.waitUntil(lambda: page.repos.rowCount() == 1, timeout=20_000)
    page.repo_view.selectRow(0)
    qtbot.waitUntil(lambda: page.files.rowCount() == count, timeout=20_000)
    return page


def test_a_measured_quant_shows_its_speed_and_quality(window, qtbot, hub, tiny_gguf: Path, starter_model: Path,
                                                      q8_0: Path) -> None:
    assert main(["quality", str(starter_model), "--ref", str(q8_0), "--text", str(TEXT), "-c", "64", "--chunks",
                 "2", "-b", "128", "-o", "json"]) == 0
    assert main(["bench", str(starter_model), "-p", "16", "-n", "8", "-r", "1", "-o", "json"]) == 0
    from models.machine.hardware import machine_fingerprint
    from models.results.choice import measured_here

    with window.ctx.open_store() as store:
        figures = measured_here(store, machine=machine_fingerprint())[STARTER_FILENAME]
    assert figures.tg and figures.kld and figures.kld > 0

    # The Hub's copy of the starter repo (its files stand in for the real ones: only the names matter here).
    hub.add_repo(STARTER_REPO_ID, {STARTER_FILENAME: tiny_gguf, "SmolLM2-135M-Instruct.Q2_K.gguf": tiny_gguf},
                 downloads=10)
    hub.add_repo("acme/Lookalike-GGUF", {STARTER_FILENAME: tiny_gguf}, downloads=5)
    qtbot.keyClick(window, Qt.Key.Key_1, CTRL)
    page = _files(window, qtbot, "SmolLM2", 2)
    rows = {row.model.quant: position for position, row in enumerate(page.files.rows)}
    cell = page.files.index(rows["Q4_1"], SPEED)
    qtbot.waitUntil(lambda: "measured" in (page.files.data(cell) or ""), timeout=30_000)
    assert page.files.data(cell) == figures.short()
    assert "KLD" in page.files.data(cell) and "t/s" in page.files.data(cell)
    tip = page.files.data(cell, Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("Measured here: generation") and q8_0.name in tip
    unmeasured = page.files.data(page.files.index(rows["Q2_K"], SPEED)) or ""
    assert "measured" not in unmeasured

    page.open_repo("acme/Lookalike-GGUF")
    qtbot.waitUntil(lambda: page.files.rowCount() == 1 and page.repo_files.repo_id == "acme/Lookalike-GGUF",
                    timeout=20_000)
    qtbot.waitUntil(lambda: page.files.row(0).measured is None, timeout=5_000)
    qtbot.wait(500)  # the measured figures are read in the background: give them time to (wrongly) arrive
    assert page.files.row(0).measured is None
    assert "measured" not in (page.files.data(page.files.index(0, SPEED)) or "")
