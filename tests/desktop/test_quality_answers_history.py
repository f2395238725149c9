"""Quality page, Past answers: real answers of the starter model and a Q8_0 of it, kept in the store, listed by
prompt run newest first, reopened side by side with each model's figures, sampling settings and seed, and deleted
only after the user confirms."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from desktop.jobs import Change
from models.cli import main
from tests.models.results.quants import q8_0  # noqa: F401


def _answer_in_the_page(window, qtbot, starter_model: Path, q8_0: Path) -> tuple[object, list[tuple[str, str]]]:
    """A real side-by-side run in the page; returns the page and what its two columns showed live."""
    window.show_page("quality")
    page = window.page("quality")
    qtbot.waitUntil(lambda: page.model_box.count() > 0, timeout=20_000)
    page.add_model(q8_0)
    view = page.answers
    page.tabs.setCurrentWidget(view)
    view.tick([str(starter_model), str(q8_0)])
    view.prompt.setCurrentText("Name three colours.")
    view.temperature.setValue(0.9)
    view.seed.setValue(77)
    view.n_predict.setValue(8)
    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.run_button.isEnabled(), timeout=120_000)
    assert view.status.text() == "Done: every model answered in turn.", view.status.text()
    live = [(view.columns[i][0].toPlainText(), view.columns[i][1].text()) for i in (0, 1)]
    # The run's end refreshes the list: the new prompt is there without reopening the page.
    qtbot.waitUntil(lambda: page.past_answers.table.rowCount() == 1, timeout=30_000)
    return page, live


def _select(page, qtbot, prompt: str) -> None:
    past = page.past_answers
    row = next(i for i, g in enumerate(past.table.rows) if g.prompt == prompt)
    past.view.selectRow(row)
    assert past.selected() is not None and past.selected().prompt == prompt


def test_a_past_prompt_reopens_side_by_side_with_its_figures_and_seed(window, qtbot, starter_model: Path,
                                                                    q8_0: Path, capsys) -> None:
    page, live = _answer_in_the_page(window, qtbot, starter_model, q8_0)
    view, past = page.answers, page.past_answers
    # A second prompt, answered by the CLI into the same store.
    assert main(["answers", str(starter_model), "--prompt", "Name a fruit.", "--temp", "0", "-n", "5", "-s", "5",
                 "-t", "2"]) == 0
    capsys.readouterr()
    window.ctx.changes.notify(Change.RESULTS)  # as a finished CLI run would, were it the app
    qtbot.waitUntil(lambda: past.table.rowCount() == 2, timeout=30_000)
    first = past.table.rows[0]
    assert first.prompt == "Name a fruit." and first.models == [starter_model.name]  # newest first
    assert past.table.data(past.table.index(1, 2)) == f"{starter_model.name}, {q8_0.name}"
    assert past.table.data(past.table.index(1, 3)) == "77"

    # Nothing selected: Open says so.
    past.view.clearSelection()
    qtbot.mouseClick(past.open_button, Qt.MouseButton.LeftButton)
    assert past.message.text() == "Select a past prompt first."

    # The CLI's answer: one column, greedy, seed 5.
    page.tabs.setCurrentWidget(past)
    _select(page, qtbot, "Name a fruit.")
    qtbot.mouseClick(past.open_button, Qt.MouseButton.LeftButton)
    assert page.tabs.currentWidget() is view
    assert len(view.columns) == 1 and view.prompt.currentText() == "Name a fruit."
    assert "temperature 0 · " in view.sampling.text() and "seed 5 · " in view.sampling.text()
    assert view.columns[0][0].toPlainText() == first.answers[0].data["text"] != ""
    assert (view.temperature.value(), view.seed.value(), view.n_predict.value()) == (0.0, 5, 5)

    # The page's own run, reopened: the same two columns as shown live, in the order the models ran.
    page.tabs.setCurrentWidget(past)
    _select(page, qtbot, "Name three colours.")
    past.view.doubleClicked.emit(past.table.index(past.view.currentIndex().row(), 0))
    assert page.tabs.currentWidget() is view and view.shown_group == past.table.rows[1].group
    assert len(view.columns) == 2
    assert [(view.columns[i][0].toPlainText(), view.columns[i][1].text()) for i in (0, 1)] == live
    for _text, figures in live:
        assert figures.startswith("TTFT ") and " t/s" in figures
    titles = [view.answers.itemAt(i).widget().title() for i in range(view.answers.count())]
    assert titles == [starter_model.name, q8_0.name]
    assert "temperature 0.9 · " in view.sampling.text() and "seed 77 · " in view.sampling.text()
    assert "at most 8 tokens" in view.sampling.text()
    # The controls hold the kept settings, so Answer would ask the same again.
    assert (view.temperature.value(), view.seed.value(), view.n_predict.value()) == (0.9, 77, 8)
    assert view.prompt.currentText() == "Name three colours." and view.status.text().startswith("Kept answers of ")
    # A reopened group is only shown: Answer runs afresh (the same settings) and replaces the columns; while it
    # runs, a past prompt does not open over the live answers.
    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    assert not view.run_button.isEnabled() and view.shown_group == ""
    page.open_answers(past.table.rows[0])
    assert past.message.text() == "Answers are being made; open a past prompt when they are done."
    assert view.prompt.currentText() == "Name three colours." and view.shown_group == ""
    qtbot.waitUntil(lambda: view.run_button.isEnabled(), timeout=120_000)
    assert "seed 77 · " in view.sampling.text() and len(view.columns) == 2
    qtbot.waitUntil(lambda: past.table.rowCount() == 3, timeout=30_000)  # the new run joins the list


def test_deleting_a_past_prompt_asks_first(window, qtbot, starter_model: Path, q8_0: Path) -> None:
    from models.results.answers_records import stored_answer_groups

    page, _live = _answer_in_the_page(window, qtbot, starter_model, q8_0)
    past = page.past_answers
    page.tabs.setCurrentWidget(past)
    past.view.clearSelection()
    past.delete_selected()
    assert past.message.text() == "Select a past prompt first." and past.confirm is None

    _select(page, qtbot, "Name three colours.")
    qtbot.mouseClick(past.delete_button, Qt.MouseButton.LeftButton)
    box = past.confirm
    assert box is not None and box.isVisible() and "Delete the 2 answers to “Name three colours.”" in box.text()
    keep = next(b for b in box.buttons() if box.buttonRole(b) == QMessageBox.ButtonRole.RejectRole)
    keep.click()
    qtbot.waitUntil(lambda: past.confirm is None, timeout=5_000)
    qtbot.wait(300)
    with window.ctx.open_store() as store:
        assert len(stored_answer_groups(store)) == 1  # kept: the user said no
    assert past.table.rowCount() == 1

    _select(page, qtbot, "Name three colours.")
    qtbot.mouseClick(past.delete_button, Qt.MouseButton.LeftButton)
    box = past.confirm
    delete = next(b for b in box.buttons() if box.buttonRole(b) == QMessageBox.ButtonRole.DestructiveRole)
    delete.click()
    qtbot.waitUntil(lambda: past.table.rowCount() == 0, timeout=30_000)
    assert past.message.text() == "Deleted 2 answers."
    with window.ctx.open_store() as store:
        assert stored_answer_groups(store) == []


def test_the_quality_page_exports_its_results_with_the_runs(window, qtbot, starter_model: Path, q8_0: Path,
                                                           tmp_path: Path, capsys) -> None:
    from html import escape

    window.show_page("quality")
    page = window.page("quality")
    assert list(page.export_buttons) == ["md", "csv", "json", "jsonl", "html"]  # sql holds runs only
    page.export("md", tmp_path / "none.md")
    qtbot.waitUntil(lambda: page.export_status.text().startswith("Not exported"), timeout=10_000)
    assert "no quality result or answer is kept yet" in page.export_status.text()

    page, live = _answer_in_the_page(window, qtbot, starter_model, q8_0)
    text = Path(__file__).parents[1] / "models" / "bench" / "data" / "public_domain.txt"
    assert main(["quality", str(starter_model), "--text", str(text), "-c", "64", "--chunks", "2", "-t", "2"]) == 0
    page.export("md", tmp_path / "norun.md")
    qtbot.waitUntil(lambda: "never benchmarked" in page.export_status.text(), timeout=10_000)
    assert not (tmp_path / "norun.md").exists()

    assert main(["bench", str(starter_model), "-p", "16", "-n", "4", "-r", "1", "-t", "2"]) == 0
    capsys.readouterr()
    report = tmp_path / "quality.html"
    page.export("html", report)
    qtbot.waitUntil(lambda: page.export_status.text().startswith("Saved"), timeout=30_000)
    assert page.export_status.text() == f"Saved 1 quality result, 2 answers and 2 runs to {report}"
    html = report.read_text()
    assert "<h2>Quality</h2>" in html and "<h2>Answers</h2>" in html and html.count('class="card answer"') == 2
    for answer, figures in live:  # the answers as the page showed them, with their figures
        assert escape(answer) in html and escape(figures) in html
    assert "seed 77" in html and "temperature 0.9" in html
