"""The worker runs llama.cpp as llama-bench does: threadpool, defaults, load mode, depth state, quiet timed reps."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from models.bench.cores import cpu_get_num_math, physical_cores
from models.bench.events import BenchEvent
from models.bench.runner import BenchRunner
from models.bench.spec import BenchJob, BenchSweep, BenchTest, check_job, default_threads, parse_cpu_mask
from models.errors import BenchmarkError


def _run(job: BenchJob, on_event: Callable[[BenchJob, BenchEvent], None] | None = None) -> tuple[list, list]:
    events: list[BenchEvent] = []

    def listen(j: BenchJob, event: BenchEvent) -> None:
        events.append(event)
        if on_event is not None:
            on_event(j, event)

    return BenchRunner(on_event=listen).run([job]), events


def _allowed_cpus(pid: int) -> list[str]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:
            continue
        out += [line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith("Cpus_allowed_list")]
    return out


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is read from Linux's /proc")
def test_threadpool_takes_the_cpu_mask(make_job: Callable[..., BenchJob]) -> None:
    # The mask reaches ggml only through a threadpool llama-bench-style; ggml pins its compute threads to it.
    allowed = sorted(os.sched_getaffinity(0))
    assert len(allowed) >= 2, "needs two CPUs to tell a pinned thread from an unpinned one"
    last = allowed[-1]
    seen: dict[str, list[str]] = {}

    def on_sample(key: str) -> Callable[[BenchJob, BenchEvent], None]:
        pid: dict[str, int] = {}

        def listen(_job: BenchJob, event: BenchEvent) -> None:
            if event.kind == "started":
                pid["worker"] = event.data["pid"]
            elif event.kind == "sample" and key not in seen:
                seen[key] = _allowed_cpus(pid["worker"])
        return listen

    job = make_job(tests=(BenchTest(0, 8),), repetitions=2, n_threads=2, cpu_mask=hex(1 << last))
    results, _ = _run(job, on_sample("masked"))
    assert results[0].status == "ok", results[0].error
    assert results[0].cpu_mask == hex(1 << last) and results[0].poll == 50
    assert str(last) in seen["masked"]  # the compute threads run on that CPU only
    plain, _ = _run(make_job(tests=(BenchTest(0, 8),), repetitions=2, n_threads=2), on_sample("plain"))
    assert plain[0].status == "ok" and str(last) not in seen["plain"]


def test_cpu_mask_parsing_as_llama_cpp() -> None:
    assert parse_cpu_mask("0x0") == [False] * 512
    flags = parse_cpu_mask("0x5")
    assert flags[:4] == [True, False, True, False] and not any(flags[4:])
    assert [i for i, on in enumerate(parse_cpu_mask("F0")) if on] == [4, 5, 6, 7]
    with pytest.raises(BenchmarkError, match="'g' is not a hex digit"):
        parse_cpu_mask("0x1g")
    with pytest.raises(BenchmarkError, match="cpu|CPU"):
        BenchSweep(models=[Path("m.gguf")], cpu_mask=["zz"]).validate()


def test_sweep_refuses_bad_llama_bench_options(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    for options, message in (({"poll": [101]}, "poll must be 0 to 100"), ({"n_gpu_layers": [-2]}, "n_gpu_layers"),
                             ({"split_mode": ["diagonal"]}, "split mode"), ({"prio": 7}, "prio must be one of"),
                             ({"numa": "everywhere"}, "numa must be one of"), ({"delay": -1}, "delay"),
                             ({"tensor_split": [(1.0, -1.0)]}, "cannot be negative")):
        with pytest.raises(BenchmarkError, match=message):
            BenchSweep(models=[model], **options).validate()  # type: ignore[arg-type]


def test_default_gpu_layers_is_all_and_minus_one_is_accepted(make_job: Callable[..., BenchJob]) -> None:
    sweep = BenchSweep(models=[Path("m.gguf")])
    assert sweep.n_gpu_layers == [-1] and sweep.jobs()[0].params.n_gpu_layers == -1
    assert check_job(make_job(n_gpu_layers=-1)) is None
    assert "n_gpu_layers must be -1 (all) or more" in (check_job(make_job(n_gpu_layers=-2)) or "")
    # On this CPU-only build -1 loads like any other count, and the estimate reads it as every layer.
    (result,), _ = _run(make_job(tests=(BenchTest(8, 0),), repetitions=1, n_gpu_layers=-1))
    assert result.status == "ok", result.error
    assert result.n_gpu_layers == -1 and result.fit_estimate["buf_model"] > 0


def test_load_mode_auto_by_default_and_mmp_keeps_its_meaning(make_job: Callable[..., BenchJob]) -> None:
    (auto,), events = _run(make_job(tests=(BenchTest(8, 0),), repetitions=1))
    (read,), _ = _run(make_job(tests=(BenchTest(8, 0),), repetitions=1, use_mmap=False))
    assert auto.status == read.status == "ok", (auto.error, read.error)
    # Asked auto, llama.cpp chose to map the file on this CPU (it says so in its log).
    assert auto.load_mode == "auto" and auto.use_mmap is True
    assert any("load_mode = mmap" in str(e.data.get("message")) for e in events if e.kind == "log")
    assert read.load_mode == "none" and read.use_mmap is False


def test_depth_is_prefilled_once_and_restored(make_job: Callable[..., BenchJob]) -> None:
    tests = (BenchTest(8, 0, n_depth=64), BenchTest(0, 4, n_depth=64))
    results, events = _run(make_job(tests=tests, repetitions=3))
    assert [r.status for r in results] == ["ok", "ok"], [r.error for r in results]
    depth = [e for e in events if e.kind == "progress" and e.data["phase"] == "depth"]
    # llama-bench's ctx_state: one prefill at depth 64, restored for the other five repetitions of both tests.
    assert len(depth) == 1 and depth[0].data["test"] == "pp8 @ d64"
    assert all(len(r.samples_ns) == 3 and r.avg_ts > 0 for r in results)


def test_memory_is_sampled_between_repetitions_only(make_job: Callable[..., BenchJob]) -> None:
    results, events = _run(make_job(tests=(BenchTest(16, 0), BenchTest(0, 8)), repetitions=3))
    assert all(r.status == "ok" for r in results)
    kinds = [(e.kind, e.data.get("phase")) for e in events if e.kind in ("memory", "sample", "progress")]
    # After the load, after each warm-up and after each repetition: a fixed count, never a timer's.
    assert sum(1 for kind, _ in kinds if kind == "memory") == 1 + 2 * (1 + 3)
    for before, after in zip(kinds, kinds[1:]):
        if before == ("progress", "rep"):
            assert after[0] == "sample"  # nothing between a repetition's start and its sample
    memory = [e for e in events if e.kind == "memory"]
    assert all(m.data["peak"] >= m.data["rss_anon"] > 0 for m in memory)


def test_default_threads_follow_llama_cpp() -> None:
    # On Linux llama.cpp counts distinct thread_siblings (physical cores); the test machine is not hybrid.
    siblings = {p.read_text() for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology/thread_siblings")}
    assert default_threads() == cpu_get_num_math() == physical_cores() == (len(siblings) or psutil.cpu_count(False))


def test_hybrid_intel_counts_performance_cores_only(tmp_path: Path) -> None:
    # A hybrid CPU cannot be had here: a sysfs/cpuinfo tree shaped like a Core i7-1260P's stands in
    # (4 P-cores with two threads each, CPUs 0-7; 8 E-cores, CPUs 8-15).
    root = tmp_path / "cpu"
    for cpu in range(16):
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        siblings = f"{(3 << (cpu - cpu % 2)):04x}" if cpu < 8 else f"{1 << cpu:04x}"
        (topology / "thread_siblings").write_text(siblings + "\n")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 hybrid_cpu\n")
    p_cores = tmp_path / "cpu_core_cpus"
    p_cores.write_text("0-7\n")
    if os.uname().machine != "x86_64":
        pytest.skip("the hybrid rule is llama.cpp's x86-64 Linux path")
    assert physical_cores(cpu_root=root) == 12
    assert cpu_get_num_math(cpu_root=root, cpuinfo=cpuinfo, p_cores=p_cores) == 4
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n")
    assert cpu_get_num_math(cpu_root=root, cpuinfo=cpuinfo, p_cores=p_cores) == 12
