"""The Benchmark page's Repetitions field takes auto (adaptive repetitions) as well as a number."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from models.bench.trust.adaptive import AdaptivePlan
from models.errors import BenchmarkError


def test_repetitions_auto(window, qtbot) -> None:
    qtbot.keyClick(window, Qt.Key.Key_5, Qt.KeyboardModifier.ControlModifier)
    page = window.pages["benchmark"]
    page.fields["repetitions"].setText("auto")
    sweep = page.sweep([Path("model.gguf")])
    assert sweep.adaptive == AdaptivePlan() and all(job.adaptive == AdaptivePlan() for job in sweep.jobs())
    page.fields["repetitions"].setText("4")
    sweep = page.sweep([Path("model.gguf")])
    assert sweep.adaptive is None and sweep.repetitions == 4
    page.fields["repetitions"].setText("often")
    with pytest.raises(BenchmarkError, match="Repetitions"):
        page.sweep([Path("model.gguf")])
