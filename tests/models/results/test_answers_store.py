"""Schema 4: a store of schema 3 (measurements of three kinds) migrates, keeping its measurements, and then keeps
answers too; the recorder gathers an answer event into one measurement."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from models.bench.runner import BenchEvent
from models.errors import StoreError
from models.results.measurements import (Measurement, MeasurementRecorder, list_measurements, model_identity,
                                         record_measurement)
from models.results.schema import MIGRATIONS, SCHEMA_VERSION, _statements
from models.results.store import ResultsStore
from tests.models.results.conftest import MACHINE_A


def _schema_3_store(path: Path) -> None:
    """A store exactly as schema 3 made it, with one quality measurement."""
    db = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:3]:
        for statement in _statements(script):
            db.execute(statement)
    db.execute("PRAGMA user_version = 3")
    db.execute("INSERT INTO machines (fingerprint_sha, machine_id, label, fingerprint, first_seen) "
               "VALUES ('k', 'a', 'A', '{}', '2026-11-27')")
    db.execute("INSERT INTO measurements (uid, kind, machine_ref, settings, data, answer, started_at) "
               "VALUES ('u1', 'quality', 1, '{\"n_ctx\": 64}', '{\"ppl\": 10.5}', 'PPL 10.5', '2026-11-27T01:00')")
    with pytest.raises(sqlite3.IntegrityError):  # schema 3's CHECK: no answers yet
        db.execute("INSERT INTO measurements (uid, kind, machine_ref) VALUES ('u2', 'answers', 1)")
    db.close()


def test_a_schema_3_store_migrates_keeps_its_measurements_and_then_keeps_answers(tmp_path: Path) -> None:
    path = tmp_path / "v3.sqlite3"
    _schema_3_store(path)
    with ResultsStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 4
        (kept,) = list_measurements(store)
        assert (kept.kind, kept.uid, kept.settings, kept.data, kept.answer) == (
            "quality", "u1", {"n_ctx": 64}, {"ppl": 10.5}, "PPL 10.5")
        ident = record_measurement(store, Measurement(
            kind="answers", target="llama.cpp", settings={"prompt": "Hi", "seed": 7},
            data={"text": "Hello!", "ttft_ms": 12.0}, model={"file": "m.gguf", "size": 1}, machine=MACHINE_A))
        (answer,) = list_measurements(store, kind="answers")
        assert answer.id == ident and answer.data["text"] == "Hello!" and answer.settings["seed"] == 7
        with pytest.raises(StoreError, match="Not a kind of measurement"):
            record_measurement(store, Measurement(kind="poem", target="", settings={}, data={}, machine=MACHINE_A))
    assert (tmp_path / "v3.sqlite3.v3.bak").exists()  # the schema-3 copy, taken before the rebuild
    db = sqlite3.connect(path)
    assert db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'measurements%' ORDER BY name").fetchall() == [
        ("measurements",), ("measurements_kind",)]  # the rebuilt table under its own name, with its index
    db.close()


def test_the_recorder_keeps_an_answer_with_its_sampling(tmp_path: Path, starter_model: Path) -> None:
    with ResultsStore(tmp_path / "s.sqlite3") as store:
        recorder = MeasurementRecorder(store, kind="answers", target="llama.cpp",
                                       settings={"prompt": "Hi", "sampling": {"seed": 1234, "temperature": 0.8}},
                                       model=model_identity(starter_model), machine=MACHINE_A,
                                       answer=lambda m: f"{m.data['n_gen']} tokens")
        recorder(None, BenchEvent("answer_piece", {"text": "Hel", "n": 1}))
        recorder(None, BenchEvent("answer", {"result": {"text": "Hello", "n_gen": 2, "ttft_ms": 30.0}}))
        recorder(None, BenchEvent("finished", {"ok": True}))
        (saved,) = list_measurements(store, kind="answers")
    assert saved.id == recorder.saved_id and saved.data == {"text": "Hello", "n_gen": 2, "ttft_ms": 30.0}
    assert saved.answer == "2 tokens" and saved.settings["sampling"]["seed"] == 1234
    assert saved.model["file"] == starter_model.name and saved.model["quant"] == "Q4_1"


def test_the_answers_cli_saves_each_answer_unless_told_not_to(starter_model: Path, isolated_home: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from models.cli import main

    argv = ["answers", str(starter_model), str(starter_model), "--prompt", "Name a colour.", "--temp", "0", "-n",
            "6", "-s", "99", "-t", "2", "-o", "json"]
    assert main([*argv, "--no-save"]) == 0
    with ResultsStore() as store:
        assert list_measurements(store, kind="answers") == []
    capsys.readouterr()
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    with ResultsStore() as store:
        saved = sorted(list_measurements(store, kind="answers"), key=lambda m: m.id)
    assert len(saved) == 2 and saved[0].settings["group"] == saved[1].settings["group"]
    for m, shown in zip(saved, printed["answers"]):
        assert m.settings["sampling"] == printed["sampling"] and m.settings["sampling"]["seed"] == 99
        assert m.data["text"] == shown["text"] and m.status == "ok" and m.answer.startswith("TTFT ")


def test_reports_show_the_answers_side_by_side(starter_model: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from models.cli import main

    assert main(["bench", str(starter_model), "-p", "16", "-n", "4", "-r", "1", "-t", "1"]) == 0  # a report needs a run
    assert main(["answers", str(starter_model), str(starter_model), "-p", "Say <b>hi</b> & go", "-n", "6",
                 "-s", "7", "-t", "1"]) == 0
    capsys.readouterr()
    html, md = tmp_path / "r.html", tmp_path / "r.md"
    for out in (html, md):
        assert main(["report", "all", "-o", str(out)]) == 0
    page = html.read_text()
    assert "<h2>Answers</h2>" in page and page.count('class="card answer"') == 2
    assert "grid-template-columns:repeat(2," in page  # the two answers side by side
    assert "Say &lt;b&gt;hi&lt;/b&gt; &amp; go" in page and "<b>hi</b>" not in page
    assert "seed 7" in page
    text = md.read_text()
    assert "## Answers" in text and text.count("### SmolLM2") >= 2
