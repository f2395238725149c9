"""tokenometer quality: real worker processes on the starter model and a real Q4_0 of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.cli import main

TEXT = Path(__file__).parents[1] / "data" / "public_domain.txt"
_KEEP: list[object] = []
FLAGS = ["--text", str(TEXT), "-c", "64", "--chunks", "3", "-t", "1", "-b", "128"]


@pytest.fixture(scope="module")
def q4_0(starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Q4_0 of the starter (Q4_1) written by llama.cpp's quantize API."""
    import llama_cpp as ll

    quiet = ll.llama_log_callback(lambda level, text, user: None)
    ll.llama_log_set(quiet, None)
    path = tmp_path_factory.mktemp("cli-quant") / "starter-Q4_0.gguf"
    params = ll.llama_model_quantize_default_params()
    params.ftype = ll.LLAMA_FTYPE_MOSTLY_Q4_0
    params.allow_requantize = True
    assert ll.llama_model_quantize(str(starter_model).encode(), str(path).encode(), params) == 0
    _KEEP.append(quiet)  # llama.cpp keeps calling it: it must outlive the fixture
    return path


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, list[dict], str]:
    code = main(["quality", *argv, "-o", "json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else []), err


def test_candidate_against_a_reference_model_computed_once_and_reused(
        q4_0: Path, starter_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from models.paths import data_dir

    code, rows, err = _json(capsys, [str(q4_0), "--ref", str(starter_model), *FLAGS])
    assert code == 0, err
    ref, cand = rows
    assert Path(ref["model_filename"]).name == starter_model.name and ref["kld_mean"] == ""
    assert Path(cand["model_filename"]).name == q4_0.name
    assert cand["kld_mean"] > 0.01 and 0 < cand["same_top"] < 1 and cand["kld_p99"] >= cand["kld_median"]
    assert cand["ppl_base"] == pytest.approx(ref["ppl"], rel=1e-3)
    assert cand["n_chunk"] == ref["n_chunk"] == 3 and cand["bits_per_byte"] > ref["bits_per_byte"] * 0.5
    cached = list((data_dir() / "quality").glob("*.kld"))
    assert len(cached) == 1 and cand["reference"] == str(cached[0])
    stamp = cached[0].stat().st_mtime_ns

    code, again, err = _json(capsys, [str(q4_0), "--ref", str(starter_model), *FLAGS])
    assert code == 0, err
    assert cached[0].stat().st_mtime_ns == stamp  # read back, not computed again
    assert again[0]["ppl"] == pytest.approx(ref["ppl"]) and again[0]["bits_per_byte"] == pytest.approx(
        ref["bits_per_byte"])
    assert again[1]["kld_mean"] == pytest.approx(cand["kld_mean"], rel=1e-6)


def test_save_ref_then_compare_against_the_file(starter_model: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    ref = tmp_path / "starter.kld"
    code, rows, err = _json(capsys, [str(starter_model), "--save-ref", str(ref), *FLAGS])
    assert code == 0, err
    assert ref.is_file() and rows[0]["reference"] == str(ref)
    code = main(["quality", str(starter_model), "--ref", str(ref), *FLAGS])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "| starter" not in out and "KLD: mean KL divergence" in out  # the md table and its legend
    line = next(row for row in out.splitlines() if row.startswith(f"| {starter_model.name}"))
    assert abs(float(line.split("|")[5])) < 1e-3  # a model against itself: KLD ~ 0 (the reference's rounding)


def test_a_truncated_reference_is_refused_before_any_worker(starter_model: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.kld"
    broken.write_bytes(b"_logits_" + (64).to_bytes(4, "little") + (49152).to_bytes(4, "little")
                       + (3).to_bytes(4, "little") + bytes(100))
    code = main(["quality", str(starter_model), "--ref", str(broken), *FLAGS])
    _out, err = capsys.readouterr()
    assert code == 1 and "truncated" in err and "0 of 3 chunks present" in err


def test_a_text_too_short_fails_with_the_worker_s_reason(starter_model: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    short = tmp_path / "short.txt"
    short.write_text("It was the best of times, it was the worst of times.")
    code = main(["quality", str(starter_model), "--text", str(short), "-c", "64", "-t", "1"])
    _out, err = capsys.readouterr()
    assert code == 1 and "too short" in err and "at least 128" in err


def test_ctrl_c_stops_the_worker_and_leaves_no_partial_reference(starter_model: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    ref = tmp_path / "cut.kld"
    root = Path(__file__).resolve().parents[4]
    proc = subprocess.Popen([sys.executable, "-m", "models.cli", "quality", str(starter_model), "--save-ref", str(ref),
                             "--text", str(TEXT), "-c", "64", "-b", "64", "-t", "1", "--progress"],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # the first chunk is done: the reference is being written
        if "chunk 1/" in line or time.monotonic() > deadline:
            break
    assert ref.with_name(ref.name + ".part").exists()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not ref.exists() and not ref.with_name(ref.name + ".part").exists()
