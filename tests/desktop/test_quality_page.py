"""Quality page: a real quality run of the starter model against a Q8_0 of it (reference computed first), progress,
the result kept; the Pareto charts and recommendation once speed is measured too; cancel; bad input in words."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCharts import QLineSeries, QScatterSeries
from PySide6.QtCore import Qt

from models.cli import main
from tests.models.results.quants import q8_0  # noqa: F401

TEXT = Path(__file__).parents[1] / "models" / "bench" / "data" / "public_domain.txt"


def _page(window, qtbot, *extra: Path):
    window.show_page("quality")
    page = window.page("quality")
    qtbot.waitUntil(lambda: page.model_box.count() > 0, timeout=20_000)
    for path in extra:
        page.add_model(path)
    return page


def _pick(page, model: Path, reference: Path | None, *, chunks: int = 2) -> None:
    page.model_box.setCurrentIndex(page.model_box.findData(str(model)))
    page.reference_box.setCurrentIndex(page.reference_box.findData(str(reference)) if reference else 0)
    page.text_field.setText(str(TEXT))
    page.ctx_size.setValue(64)
    page.chunks.setValue(chunks)


def test_measure_against_a_reference_then_choose(window, qtbot, starter_model: Path, q8_0: Path) -> None:
    from models.results.measurements import list_measurements

    page = _page(window, qtbot, q8_0)
    assert page.model_box.findData(str(starter_model)) >= 0  # the library's starter is offered
    qtbot.waitUntil(lambda: page.recommendation.text() != "", timeout=30_000)
    assert page.recommendation.text().startswith("Nothing to choose from yet")
    _pick(page, starter_model, q8_0)
    statuses: list[str] = []
    page.relay.arrived.connect(lambda _job, event: statuses.append(page.status.text())
                             if event.kind == "quality_chunk" else None)
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert not page.run_button.isEnabled() and page.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: page.run_button.isEnabled(), timeout=180_000)
    assert page.status.text().startswith("Done."), page.status.text()
    assert page.progress.value() == 100
    # Live: the reference's chunks first, then the model's with its running KLD.
    assert any("(reference): chunk 1/2" in s for s in statuses) and any("KLD" in s for s in statuses)
    with window.ctx.open_store() as store:
        saved = {m.model["file"]: m for m in list_measurements(store, kind="quality")}
    assert set(saved) == {starter_model.name, q8_0.name}
    assert saved[starter_model.name].data["kld"]["kld_mean"] > 0
    qtbot.waitUntil(lambda: page.stored.rowCount() == 2, timeout=30_000)
    rows = {row.file: row for row in page.stored.rows}
    assert rows[q8_0.name].kld == 0.0 and rows[starter_model.name].kld == saved[starter_model.name].data["kld"][
        "kld_mean"]

    # Speed measured by the real bench on both files: the choice appears.
    assert main(["bench", str(q8_0), str(starter_model), "-p", "16", "-n", "8", "-r", "1", "-o", "json"]) == 0
    page.min_tg.setValue(0.0)  # a change re-reads the store
    qtbot.waitUntil(lambda: page.recommendation.text().startswith("Best quality"), timeout=30_000)
    assert page.choice.metric == "kld" and len(page.choice.points) == 2
    assert f": {q8_0.name} (mean KLD 0," in page.recommendation.text()  # the reference is the best quality
    assert [chart.objectName() for chart in page._charts] == ["pareto-tg", "pareto-mem_peak"]
    from models.results.choice import pareto_front

    for chart, against in zip(page._charts, ("tg", "mem_peak")):
        series = chart.chart().series()
        # One point per model, named by its quant in the legend.
        assert sorted(s.name() for s in series if isinstance(s, QScatterSeries)) == ["Q4_1", "Q8_0"]
        lines = [s for s in series if isinstance(s, QLineSeries) and not isinstance(s, QScatterSeries)]
        front = pareto_front(page.choice.points, against=against)
        assert len(lines) == (1 if len(front) > 1 else 0)
        if lines:
            assert lines[0].count() == len(front) and lines[0].name() == "Pareto front"
    # A speed no model reaches: no recommendation, and the sentence says which is fastest.
    page.min_tg.setValue(10_000.0)
    qtbot.waitUntil(lambda: "the fastest is" in page.recommendation.text(), timeout=30_000)
    assert page.choice.recommended is None


def test_cancel_stops_the_run(window, qtbot, starter_model: Path, tmp_path: Path) -> None:
    page = _page(window, qtbot)
    _pick(page, starter_model, None, chunks=0)  # every chunk of the text
    # A text some thousand chunks long, so that even a fast machine is midway when the cancel lands.
    long_text = tmp_path / "long.txt"
    long_text.write_text(TEXT.read_text(encoding="utf-8") * 60, encoding="utf-8")
    page.text_field.setText(str(long_text))
    page.ctx_size.setValue(16)
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "chunk" in page.status.text(), timeout=60_000)
    qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.run_button.isEnabled(), timeout=60_000)
    assert page.status.text() == "Cancelled." and page.progress.value() < 100
    qtbot.waitUntil(lambda: page.recommendation.text() != "", timeout=30_000)
    assert page.stored.rowCount() == 0  # nothing finished, nothing listed


def test_bad_input_is_refused_in_words(window, qtbot, starter_model: Path, tmp_path: Path) -> None:
    page = _page(window, qtbot, starter_model)
    _pick(page, starter_model, starter_model)
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert page.status.text().startswith("The reference is the model itself")
    _pick(page, starter_model, None)
    page.text_field.setText(str(tmp_path / "missing.txt"))
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert page.status.text() == f"The text file {tmp_path / 'missing.txt'} does not exist."
    assert page.run_button.isEnabled() and not page.cancel_button.isEnabled()


def test_answers_side_by_side_one_model_after_another(window, qtbot, starter_model: Path, q8_0: Path) -> None:
    page = _page(window, qtbot, q8_0)
    page.tabs.setCurrentWidget(page.answers)
    view = page.answers
    view.tick([str(starter_model)])
    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    assert view.status.text() == "Tick 2 to 4 models to compare; 1 ticked."
    view.tick([str(starter_model), str(q8_0)])
    view.prompt.setCurrentText("Name three colours.")
    view.temperature.setValue(0.0)
    view.seed.setValue(42)
    view.n_predict.setValue(12)
    order: list[tuple[str, str]] = []  # (model, event kind) as the pieces arrived
    view.relay.arrived.connect(lambda job, event: order.append((job.model_path.name, event.kind))
                               if event.kind in ("answer_piece", "answer") else None)
    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    assert "temperature 0 · " in view.sampling.text() and "seed 42" in view.sampling.text()
    assert "at most 12 tokens" in view.sampling.text()
    qtbot.waitUntil(lambda: view.run_button.isEnabled(), timeout=120_000)
    assert view.status.text() == "Done: every model answered in turn.", view.status.text()
    for index in (0, 1):
        text, figures = view.columns[index]
        assert text.toPlainText().strip() and figures.text().startswith("TTFT ")
        assert " t/s" in figures.text()
    # Streamed, and one after another: every piece of the first model's answer before any of the second's.
    models = [name for name, kind in order if kind == "answer_piece"]
    assert models[0] == starter_model.name and models[-1] == q8_0.name
    switch = models.index(q8_0.name)
    assert set(models[:switch]) == {starter_model.name} and set(models[switch:]) == {q8_0.name}
    assert (starter_model.name, "answer") in order and (q8_0.name, "answer") in order
    # Kept in the store: one measurement per model, the same group, with the sampling settings and seed.
    from models.results.measurements import list_measurements

    with window.ctx.open_store() as store:
        saved = {m.model["file"]: m for m in list_measurements(store, kind="answers")}
    assert set(saved) == {starter_model.name, q8_0.name}
    assert len({m.settings["group"] for m in saved.values()}) == 1
    for index, name in enumerate((starter_model.name, q8_0.name)):
        m = saved[name]
        assert m.settings["sampling"]["seed"] == 42 and m.settings["sampling"]["temperature"] == 0.0
        assert m.settings["prompt"] == "Name three colours." and m.data["text"] == view.columns[index][0].toPlainText()
        assert m.answer == view.columns[index][1].text() and m.data["ttft_ms"] > 0
