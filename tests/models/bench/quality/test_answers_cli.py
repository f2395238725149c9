"""tokenometer answers: real worker processes answering one prompt on the starter model and a Q4_0 of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.cli import main

_KEEP: list[object] = []


@pytest.fixture(scope="module")
def q4_0(starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import llama_cpp as ll

    quiet = ll.llama_log_callback(lambda level, text, user: None)
    ll.llama_log_set(quiet, None)
    _KEEP.append(quiet)
    path = tmp_path_factory.mktemp("answers-quant") / "starter-Q4_0.gguf"
    params = ll.llama_model_quantize_default_params()
    params.ftype = ll.LLAMA_FTYPE_MOSTLY_Q4_0
    params.allow_requantize = True
    assert ll.llama_model_quantize(str(starter_model).encode(), str(path).encode(), params) == 0
    return path


def test_two_models_answer_in_turn_with_their_figures(starter_model: Path, q4_0: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["answers", str(starter_model), str(q4_0), "--prompt", "Name three colours.", "-n", "8",
                 "--temp", "0", "-t", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "prompt: Name three colours." in out and "sampling: temperature 0, top-k 40" in out and "seed 1234" in out
    assert out.index(f"== {starter_model.name} ==") < out.index(f"== {q4_0.name} ==")
    assert out.count("-- TTFT ") == 2 and out.count(" t/s | stop: ") == 2


def test_json_keeps_the_answers_and_the_sampling(starter_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["answers", str(starter_model), "--sample", "2", "-n", "6", "--seed", "42", "-t", "1", "-o", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["prompt"].startswith("Write a haiku") and data["sampling"]["seed"] == 42
    (answer,) = data["answers"]
    assert answer["model_filename"] == str(starter_model) and answer["text"] and 1 <= answer["n_gen"] <= 6
    assert answer["sampling"]["seed"] == 42 and answer["ttft_ms"] > 0


@pytest.mark.parametrize(("argv", "message"), [
    (["--prompt", "   "], "prompt is empty"),
    (["--sample", "9"], "--sample 9 is not one"),
    (["--prompt", "hi", "--sample", "1"], "not both"),
    (["--prompt", "hi", "--top-p", "0"], "top-p"),
])
def test_bad_requests_are_refused_before_any_worker(starter_model: Path, argv: list[str], message: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["answers", str(starter_model), *argv])
    out, err = capsys.readouterr()
    assert code == 1 and message in err and "==" not in out
