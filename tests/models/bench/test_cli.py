"""tokenometer bench: llama-bench's flags, its output, exit codes, and Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from models.cli import build_parser
from models.cli.bench import build_sweep

ROOT = Path(__file__).resolve().parents[3]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "models.cli", "bench", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_flags_build_the_sweep(starter_model: Path) -> None:
    args = build_parser().parse_args([
        "bench", str(starter_model), "-p", "16,32", "-n", "4", "-pg", "8,2", "-d", "0,16", "-t", "1,2",
        "-ngl", "0", "-b", "64", "-ub", "32", "-fa", "on,off", "-ctk", "q8_0", "-ctv", "f16", "-mmp", "0,1",
        "-r", "3", "--ttft", "32"])
    sweep = build_sweep(args)
    assert sweep.models == [starter_model]
    assert sweep.n_prompt == [16, 32] and sweep.n_gen == [4] and sweep.n_pg == [(8, 2)]
    assert sweep.n_depth == [0, 16] and sweep.n_threads == [1, 2] and sweep.n_gpu_layers == [0]
    assert sweep.flash_attn == ["on", "off"] and sweep.type_k == ["q8_0"] and sweep.use_mmap == [False, True]
    assert sweep.repetitions == 3 and sweep.ttft_prompt_tokens == 32
    assert len(sweep.jobs()) == 2 * 2 * 2  # threads x flash attention x mmap
    assert [t.name for t in sweep.tests()][:4] == ["pp16", "pp32", "tg4", "pp8+tg2"]


def test_json_output_and_exit_code(starter_model: Path) -> None:
    done = _cli(str(starter_model), "-p", "16", "-n", "4", "-r", "2", "-t", "1", "-o", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["test"] for r in rows] == ["pp16", "tg4"]
    assert all(r["avg_ts"] > 0 and len(r["samples_ts"]) == 2 for r in rows)


def test_default_model_and_markdown_table() -> None:
    done = _cli("-p", "16", "-n", "4", "-r", "2", "-t", "1", "--progress")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("| model") and "t/s" in lines[0]
    assert "pp16" in lines[2] and "Q4_1" in lines[2] and "±" in lines[2]
    assert "tg4" in lines[3]
    assert lines[-1].startswith("build: ")
    assert "rep 2/2" in done.stderr  # --progress goes to stderr


def test_failures_exit_nonzero(tmp_path: Path) -> None:
    missing = _cli(str(tmp_path / "missing.gguf"), "-p", "16", "-n", "0", "-r", "1")
    assert missing.returncode == 1
    assert "failed" in missing.stdout and "Model file not found" in missing.stdout
    impossible = _cli("-b", "32", "-ub", "64", "-r", "1")
    assert impossible.returncode == 1 and "n_ubatch (64) cannot be larger than n_batch (32)" in impossible.stderr


def test_ctrl_c_cancels_cleanly(starter_model: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "models.cli", "bench", str(starter_model), "-p", "16",
                             "-n", "64", "-r", "50", "-t", "1", "--progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "tg64 rep" in line:  # the generation test is under way
            break
    workers = psutil.Process(proc.pid).children()
    assert workers
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "cancelling" in err
    assert "pp16" in out and "±" in out  # the finished test is still printed
    assert "cancelled" in out
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


def test_every_run_is_saved_to_the_results_store_unless_asked_not_to(starter_model: Path) -> None:
    from models.results.store import ResultsStore

    saved = _cli(str(starter_model), "-p", "16", "-n", "4", "-r", "1", "-t", "1")
    assert saved.returncode == 0, saved.stderr
    unsaved = _cli(str(starter_model), "-p", "8", "-n", "0", "-r", "1", "-t", "1", "--no-save")
    assert unsaved.returncode == 0, unsaved.stderr
    with ResultsStore() as store:  # the isolated home the CLI wrote to (TOKENOMETER_HOME)
        runs = store.list_runs()
    assert sorted(run.result.test for run in runs) == ["pp16", "tg4"]
    assert all(run.result.fit_estimate and run.machine.get("cpu") for run in runs)
