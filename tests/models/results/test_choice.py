"""The choice and stored quality: the real CLI (quality and bench) on the starter model and a Q8_0 of it, then
the store read back as the Quality page and `models.results.choice` read it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from models.cli import main
from models.results.choice import ChoicePoint, build_choice, pareto_front
from models.results.measurements import list_measurements
from models.results.store import ResultsStore
from tests.models.results.quants import q8_0  # noqa: F401

TEXT = Path(__file__).parents[1] / "bench" / "data" / "public_domain.txt"
QUALITY = ["--text", str(TEXT), "-c", "64", "--chunks", "2", "-t", "2", "-b", "128", "-o", "json"]
BENCH = ["-p", "16", "-n", "8", "-r", "1", "-t", "2", "-o", "json"]


@pytest.fixture(scope="module")
def measured(q8_0: Path, starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home where `tokenometer quality Q4_1 --ref Q8_0` and `tokenometer bench` of both have run; its store."""
    home = tmp_path_factory.mktemp("choice-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TOKENOMETER_HOME", str(home))
        assert main(["quality", str(starter_model), "--ref", str(q8_0), *QUALITY]) == 0
        assert main(["bench", str(q8_0), str(starter_model), *BENCH]) == 0
        from models.paths import results_db_path

        return results_db_path()


def _machine() -> dict:
    from models.machine.hardware import machine_fingerprint

    return machine_fingerprint()


def test_quality_cli_saves_each_model_with_text_reference_and_settings(measured: Path, q8_0: Path,
                                                                      starter_model: Path) -> None:
    with ResultsStore(measured) as store:
        saved = {m.model["file"]: m for m in list_measurements(store, kind="quality")}
    assert set(saved) == {q8_0.name, starter_model.name}
    ref, cand = saved[q8_0.name], saved[starter_model.name]
    assert ref.settings["role"] == "reference" and cand.settings["role"] == "candidate"
    assert cand.model["quant"] == "Q4_1" and ref.model["quant"] == "Q8_0" and cand.model["size"] > 0
    text_sha = hashlib.sha256(TEXT.read_bytes()).hexdigest()
    for m in (ref, cand):
        assert m.status == "ok" and m.target == "llama.cpp"
        assert m.settings["text"] == {"name": TEXT.name, "sha256": text_sha}
        assert m.settings["n_ctx"] == 64 and m.data["n_ctx"] == 64 and m.data["n_chunk"] == 2
        assert m.settings["n_threads"] == 2 and m.data["bits_per_byte"] > 0
    # Both name the same reference (the Q8_0's log-probabilities, by model, tokens and chunk size).
    assert cand.settings["reference"] == ref.settings["reference"]
    assert cand.settings["reference"]["model"] == q8_0.name and cand.settings["reference"]["n_ctx"] == 64
    assert ref.data["kld"] is None and cand.data["kld"]["kld_mean"] > 0
    assert "KLD" in cand.answer and q8_0.name in cand.answer and cand.answer.startswith("PPL ")


def test_no_save_keeps_nothing(starter_model: Path, isolated_home: Path) -> None:
    assert main(["quality", str(starter_model), *QUALITY, "--no-save"]) == 0
    with ResultsStore() as store:
        assert list_measurements(store, kind="quality") == []


def test_choice_ranks_by_kld_against_the_shared_reference(measured: Path, q8_0: Path, starter_model: Path) -> None:
    with ResultsStore(measured) as store:
        choice = build_choice(store, machine=_machine(), memory_bytes=2**40, min_tg=0.0)
    assert choice.metric == "kld" and choice.reference_model == q8_0.name and choice.unmatched == []
    points = {p.file: p for p in choice.points}
    assert set(points) == {q8_0.name, starter_model.name}
    assert points[q8_0.name].quality == 0.0 and points[starter_model.name].quality > 0
    for p in points.values():
        assert p.tg > 0 and p.mem_peak > 50 * 2**20
    # The reference is strictly best in quality, so nothing beats it on either chart.
    assert points[q8_0.name].on_speed_front and points[q8_0.name].on_memory_front
    q4 = points[starter_model.name]
    assert q4.on_speed_front == (q4.tg > points[q8_0.name].tg)
    assert q4.on_memory_front == (q4.mem_peak < points[q8_0.name].mem_peak)
    assert choice.recommended == points[q8_0.name]
    assert choice.recommendation.startswith("Best quality that fits in your memory (1.00 TiB) and reaches at "
                                            f"least 0 t/s: {q8_0.name} (mean KLD 0,")


def test_recommendation_follows_memory_and_speed(measured: Path) -> None:
    with ResultsStore(measured) as store:
        loose = build_choice(store, machine=_machine(), memory_bytes=2**40, min_tg=0.0)
        small = min(loose.points, key=lambda p: p.mem_peak)
        fast = max(loose.points, key=lambda p: p.tg)
        tight = build_choice(store, machine=_machine(), memory_bytes=small.mem_peak, min_tg=0.0)
        none_fit = build_choice(store, machine=_machine(), memory_bytes=small.mem_peak - 1, min_tg=0.0)
        too_slow = build_choice(store, machine=_machine(), memory_bytes=2**40, min_tg=fast.tg * 2)
    fitting = [p for p in loose.points if p.mem_peak <= small.mem_peak]
    assert tight.recommended == min(fitting, key=lambda p: (p.quality, -p.tg))
    assert tight.recommended is not None and tight.recommended.file in tight.recommendation
    assert none_fit.recommended is None and none_fit.recommendation.startswith("None of the 2 models measured here "
                                                                               "fits in")
    assert small.file in none_fit.recommendation
    assert too_slow.recommended is None and f"the fastest is {fast.file}" in too_slow.recommendation


def test_other_machines_and_unmeasured_speed_are_left_out(measured: Path) -> None:
    with ResultsStore(measured) as store:
        elsewhere = build_choice(store, machine={**_machine(), "cpu": "another CPU"}, memory_bytes=2**40)
    assert elsewhere.points == [] and elsewhere.recommended is None
    assert elsewhere.recommendation.startswith("Nothing to choose from yet")


def test_bits_per_byte_ranks_models_without_a_shared_reference(q8_0: Path, starter_model: Path,
                                                               isolated_home: Path) -> None:
    assert main(["quality", str(q8_0), str(starter_model), *QUALITY]) == 0
    assert main(["bench", str(starter_model), *BENCH]) == 0
    with ResultsStore() as store:
        choice = build_choice(store, machine=_machine(), memory_bytes=2**40, min_tg=0.0)
        saved = {m.model["file"]: m for m in list_measurements(store, kind="quality")}
    assert choice.metric == "bits_per_byte" and choice.unmatched == [q8_0.name]  # no speed measured for the Q8_0
    (point,) = choice.points
    assert point.file == starter_model.name and point.quality == saved[starter_model.name].data["bits_per_byte"]
    assert "reference" not in saved[starter_model.name].settings and saved[q8_0.name].settings["reference_file"] == ""
    assert "bits per byte" in choice.recommendation


def test_pareto_front_keeps_only_the_unbeaten() -> None:
    def point(name: str, quality: float, tg: float, mem: int) -> ChoicePoint:
        return ChoicePoint(file=name, repo="", quant="", quality=quality, tg=tg, mem_peak=mem, quality_id=0, run_id=0)

    best, fast, beaten, tie = (point("best", 0.0, 10, 300), point("fast", 0.2, 40, 100),
                               point("beaten", 0.3, 30, 200), point("tie", 0.2, 40, 100))
    assert [p.file for p in pareto_front([best, fast, beaten], against="tg")] == ["best", "fast"]
    assert [p.file for p in pareto_front([best, fast, beaten], against="mem_peak")] == ["fast", "best"]
    # Two equal points do not beat each other: both stay.
    assert {p.file for p in pareto_front([fast, tie, beaten], against="tg")} == {"fast", "tie"}


def test_measured_here_gives_each_file_its_speed_and_quality(measured: Path, q8_0: Path,
                                                             starter_model: Path) -> None:
    from models.hub.starter import STARTER_REPO_ID
    from models.results.choice import measured_here

    with ResultsStore(measured) as store:
        figures = measured_here(store, machine=_machine())
        choice = build_choice(store, machine=_machine(), memory_bytes=2**40, min_tg=0.0)
    points = {p.file: p for p in choice.points}
    assert set(figures) == {q8_0.name, starter_model.name}
    q4 = figures[starter_model.name]
    assert q4.repo == STARTER_REPO_ID and figures[q8_0.name].repo == ""
    assert q4.tg == points[starter_model.name].tg and q4.kld == points[starter_model.name].quality > 0
    assert q4.reference_model == q8_0.name and figures[q8_0.name].kld == 0.0
    assert q4.short() == f"{q4.tg:.{1 if q4.tg >= 10 else 2}f} t/s · KLD {q4.kld:.4f} measured"
    assert any(q8_0.name in line for line in q4.lines())
