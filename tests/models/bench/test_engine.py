"""Real llama.cpp runs on the starter model: the method, the figures and the event stream."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

import pytest

from models.bench.events import BenchEvent
from models.bench.runner import BenchRunner, run_sweep
from models.bench.spec import BenchJob, BenchSweep, BenchTest


def _run(job: BenchJob, **runner_options: object) -> tuple[list, list[BenchEvent]]:
    events: list[BenchEvent] = []
    runner = BenchRunner(on_event=lambda _job, event: events.append(event), **runner_options)  # type: ignore[arg-type]
    return runner.run([job]), events


def test_small_job_measures_every_test(make_job: Callable[..., BenchJob]) -> None:
    tests = (BenchTest(16, 0), BenchTest(0, 4), BenchTest(8, 2), BenchTest(8, 0, n_depth=16))
    results, events = _run(make_job(tests=tests, repetitions=2))
    assert [r.test for r in results] == ["pp16", "tg4", "pp8+tg2", "pp8 @ d16"]
    for result, test in zip(results, tests):
        assert result.status == "ok", result.error
        assert len(result.samples_ns) == 2 and len(result.samples_ts) == 2
        assert result.avg_ts > 0 and result.avg_ns > 0
        # t/s counts prompt and generated tokens, never the depth (llama-bench's definition).
        n_tokens = test.n_prompt + test.n_gen
        assert result.samples_ts == pytest.approx([1e9 * n_tokens / ns for ns in result.samples_ns])
        assert result.n_ctx == test.n_prompt + test.n_gen + test.n_depth
    first = results[0]
    assert "Q4_1" in first.model_type and first.model_size > 50_000_000 and first.model_n_params > 100_000_000
    assert first.build_commit and first.system_info and "CPU" in first.cpu_info + first.system_info
    assert first.backends and first.llama_cpp_python_version
    assert first.load_ms > 0
    assert first.buf_model > 0 and first.buf_kv > 0 and first.buf_compute > 0 and first.buf_output > 0
    assert any(key.endswith(":model") for key in first.buffers)
    # Every run carries models.fit.estimate's estimate beside the buffers llama.cpp logged, so the estimate is checked.
    for result in results:
        for key in ("buf_model", "buf_kv", "buf_compute", "buf_output"):
            assert result.fit_estimate[key] == pytest.approx(getattr(result, key), rel=0.10), key
    assert first.mem_rss_anon > 0 and first.mem_rss_file > 0 and first.mem_peak >= first.mem_rss_anon
    kinds = [e.kind for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished" and events[-1].data["ok"] is True
    assert kinds.count("sample") == 8 and kinds.count("result") == 4
    assert "memory" in kinds and any(e.kind == "log" and e.data.get("source") == "llama.cpp" for e in events)


def test_kv_cache_size_follows_context_and_type(make_job: Callable[..., BenchJob]) -> None:
    small, = _run(make_job(tests=(BenchTest(16, 0),), repetitions=1))[0]
    large, = _run(make_job(tests=(BenchTest(16, 0, n_depth=496),), repetitions=1))[0]
    quant, = _run(make_job(tests=(BenchTest(16, 0, n_depth=496),), repetitions=1, type_k="q8_0",
                           type_v="q8_0", flash_attn="on"))[0]
    assert small.status == large.status == quant.status == "ok", (small.error, large.error, quant.error)
    assert large.buf_kv > small.buf_kv  # 512 cells against 256 (llama.cpp allocates at least 256)
    assert quant.buf_kv < large.buf_kv and quant.type_k == "q8_0" and quant.flash_attn == "on"


def test_time_to_first_token_for_a_chat_prompt(make_job: Callable[..., BenchJob], starter_model: Path) -> None:
    job = make_job(tests=(BenchTest(0, 2),), repetitions=2)
    job = BenchJob(model_path=job.model_path, params=job.params, tests=job.tests, repetitions=2,
                   ttft_prompt_tokens=64)
    (result,), _events = _run(job)
    assert result.status == "ok", result.error
    assert result.ttft_ms > 0 and len(result.ttft_samples_ms) == 2
    assert result.ttft_ms == pytest.approx(statistics.mean(result.ttft_samples_ms))
    assert 48 <= result.ttft_prompt_tokens <= 80  # "about" the asked length, templated


def test_default_shaped_run_gives_sane_numbers(starter_model: Path) -> None:
    # llama-bench's defaults (pp512, tg128, 5 repetitions, n_batch 2048, n_ubatch 512) at 2 threads.
    sweep = BenchSweep(models=[starter_model], n_threads=[2])
    results = run_sweep(sweep)
    assert [r.test for r in results] == ["pp512", "tg128"]
    for result in results:
        assert result.status == "ok", result.error
        assert result.avg_ts > 0 and len(result.samples_ns) == sweep.repetitions == 5
        assert result.stddev_ts == pytest.approx(statistics.stdev(result.samples_ts))
        assert result.avg_ts == pytest.approx(statistics.mean(result.samples_ts))
        assert result.stddev_ns == pytest.approx(statistics.stdev(result.samples_ns), abs=1)
    # Prompt processing batches tokens; on any CPU it outpaces one-token-at-a-time generation.
    assert results[0].avg_ts > results[1].avg_ts


def test_mmap_off_moves_the_weights_into_private_memory(make_job: Callable[..., BenchJob]) -> None:
    mapped, = _run(make_job(tests=(BenchTest(8, 0),), repetitions=1, use_mmap=True))[0]
    loaded, = _run(make_job(tests=(BenchTest(8, 0),), repetitions=1, use_mmap=False))[0]
    assert mapped.status == loaded.status == "ok", (mapped.error, loaded.error)
    assert loaded.use_mmap is False and mapped.use_mmap is True
    # Read into allocated buffers, the ~92 MiB of weights count as private memory instead of file pages.
    assert loaded.mem_rss_anon - mapped.mem_rss_anon > mapped.model_size // 2
    assert mapped.mem_rss_file - loaded.mem_rss_file > mapped.model_size // 2
