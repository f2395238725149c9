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


def test_llama_bench_process_and_gpu_flags(starter_model: Path) -> None:
    args = build_parser().parse_args([
        "bench", str(starter_model), "-sm", "none,row", "-ts", "3/1,1;1", "-mg", "1", "-nkvo", "1",
        "-C", "0x3", "--cpu-strict", "1", "--poll", "0,100", "--numa", "distribute", "--prio", "-1",
        "--delay", "2", "-ngl", "-1"])
    sweep = build_sweep(args)
    assert sweep.split_mode == ["none", "row"] and sweep.tensor_split == [(3.0, 1.0), (1.0, 1.0)]
    assert sweep.main_gpu == [1] and sweep.no_kv_offload == [True] and sweep.n_gpu_layers == [-1]
    assert sweep.cpu_mask == ["0x3"] and sweep.cpu_strict == [True] and sweep.poll == [0, 100]
    assert (sweep.numa, sweep.prio, sweep.delay) == ("distribute", -1, 2)
    jobs = sweep.jobs()
    assert len(jobs) == 2 * 2 * 2  # split mode x tensor split x poll
    first = jobs[0]
    assert first.numa == "distribute" and first.prio == -1 and first.delay == 2
    assert first.params.split_mode == "none" and first.params.tensor_split == (3.0, 1.0)
    # Through the worker's wire format unchanged.
    from models.bench.spec import BenchJob

    assert BenchJob.from_json(json.loads(json.dumps(first.to_json()))) == first
    defaults = build_sweep(build_parser().parse_args(["bench", str(starter_model)]))
    assert defaults.use_mmap == [None] and defaults.n_gpu_layers == [-1] and defaults.poll == [50]


def test_bad_llama_bench_flags_are_refused() -> None:
    bad_mask = _cli("-C", "0xZZ", "-r", "1")
    assert bad_mask.returncode == 1 and "'Z' is not a hex digit" in bad_mask.stderr
    bad_mode = _cli("-sm", "diagonal", "-r", "1")
    assert bad_mode.returncode == 2 and "split mode must be none, layer, row or tensor" in bad_mode.stderr


def test_json_rows_carry_llama_bench_thread_and_load_fields(starter_model: Path) -> None:
    done = _cli(str(starter_model), "-p", "8", "-n", "0", "-r", "1", "-t", "1", "-C", "0x1", "--poll", "0",
                "-o", "json", "--no-save")
    assert done.returncode == 0, done.stderr
    row, = json.loads(done.stdout)
    assert row["cpu_mask"] == "0x1" and row["poll"] == 0 and row["cpu_strict"] is False
    assert row["load_mode"] == "auto" and row["use_mmap"] is True and row["n_gpu_layers"] == -1
    assert row["split_mode"] == "layer" and row["tensor_split"] == "0.00" and row["no_kv_offload"] is False
    assert row["load_page_cache"] in ("cold", "partial", "warm")
