"""LocalScore's test set and score, as Mozilla's LocalScore (llamafile/localscore) defines them, from our results.

LocalScore runs nine prompt+generation tests in fresh contexts. Each gives the prompt speed (n_prompt over the
prompt's time), the generation speed (n_gen over the generation's time, which starts at depth n_prompt) and the
time to first token (the prompt plus the first generated token). Its score is
    10 x cbrt(mean prompt t/s x mean generation t/s x 1000 / mean TTFT ms)
over the nine tests (localscore.cpp getResultsSummary). A score of 1,000+ is "excellent", 250 "acceptable to
good", 100 "relatively poor" (its README). Scores are per model: compare a machine with LocalScore's published
results for the same model file (its site runs Llama 3.2 1B, Llama 3.1 8B and Qwen2.5 14B, all Q4_K_M).

We run each pair as llama-bench-style tests: ppN at depth 0, and tgM at depth N (N random tokens decoded
untimed first, then M timed), which is the same work as LocalScore's generation phase. TTFT is then the prompt's
time plus one token at the tg test's mean rate: LocalScore times the first token alone, which at depth N costs
about the mean of the following ones (slightly less: later tokens read a longer cache).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from models.bench.spec import BenchJob, BenchParams, BenchResult, BenchTest

log = logging.getLogger(__name__)

# get_baseline_test_configs() in localscore.cpp: (n_prompt, n_gen) with the use case LocalScore names for each.
LOCALSCORE_TESTS: tuple[tuple[int, int, str], ...] = (
    (1024, 16, "title generation"), (4096, 256, "content summarization"), (2048, 256, "lots of code to fix"),
    (2048, 768, "standard code chat"), (1024, 1024, "code back and forth"), (1280, 3072, "reasoning over code"),
    (384, 1152, "code gen with back and forth"), (64, 1024, "code gen/ideation"),
    (16, 1536, "QA, storytelling, reasoning"),
)
# LocalScore's cmd_params defaults: batch 2048, ubatch 512, flash attention off, every layer on the GPU, one
# repetition (--extended: 4, --long: 16). Its KV cache is bf16 on CPUs with AVX512_BF16, else f16.
LOCALSCORE_BATCH, LOCALSCORE_UBATCH = 2048, 512
LOCALSCORE_REPETITIONS = 1
ABOUT = ("LocalScore (localscore.ai, Mozilla Builders) runs nine prompt+generation tests, from 1024 prompt tokens "
         "with 16 generated to 16 with 1536, and scores 10 x the cube root of mean prompt t/s x mean generation "
         "t/s x 1000 / mean time to first token (ms). Compare it only with LocalScore results for the same model "
         "file; 1,000+ is excellent, 250 good, 100 poor.")


def localscore_tests() -> tuple[BenchTest, ...]:
    """Every test the preset runs: each prompt size once at depth 0, each generation at its prompt's depth."""
    prompts = sorted({p for p, _, _ in LOCALSCORE_TESTS})
    return tuple([BenchTest(n_prompt=p, n_gen=0) for p in prompts]
                 + [BenchTest(n_prompt=0, n_gen=g, n_depth=p) for p, g, _ in LOCALSCORE_TESTS])


def localscore_job(model_path: Path | str, *, n_threads: int, repetitions: int = LOCALSCORE_REPETITIONS,
                   type_kv: str = "f16", n_gpu_layers: int = -1, rpc: str = "") -> BenchJob:
    """The LocalScore preset as one job for the runner (`n_gpu_layers=0` is LocalScore's --cpu; `rpc` the RPC
    servers whose devices join this machine's, which LocalScore itself cannot use)."""
    params = BenchParams(n_threads=n_threads, n_batch=LOCALSCORE_BATCH, n_ubatch=LOCALSCORE_UBATCH,
                         flash_attn="off", type_k=type_kv, type_v=type_kv, n_gpu_layers=n_gpu_layers, rpc=rpc)
    return BenchJob(model_path=Path(model_path), params=params, tests=localscore_tests(), repetitions=repetitions)


@dataclass(frozen=True)
class LocalScoreTest:
    """One of the nine: its three figures as LocalScore reports them."""

    n_prompt: int
    n_gen: int
    prompt_tps: float
    gen_tps: float
    ttft_ms: float


@dataclass
class LocalScore:
    """The score and its parts; `missing` lists the tests without an ok result (then the score is 0)."""

    score: float = 0.0
    avg_prompt_tps: float = 0.0
    avg_gen_tps: float = 0.0
    avg_ttft_ms: float = 0.0
    tests: list[LocalScoreTest] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing and len(self.tests) == len(LOCALSCORE_TESTS)


def score_of(prompt_tps: float, gen_tps: float, ttft_ms: float) -> float:
    """LocalScore's formula for the three means."""
    if prompt_tps <= 0 or gen_tps <= 0 or ttft_ms <= 0:
        return 0.0
    return 10.0 * math.pow(prompt_tps * gen_tps * (1000.0 / ttft_ms), 1.0 / 3.0)


def localscore(results: Iterable[BenchResult]) -> LocalScore:
    """The score from a run of the preset (one model and settings; the newest result of each test counts).

    An incomplete set gives the parts it has and names the missing tests, with no score: LocalScore's average
    is over all nine, and a partial one would not compare.
    """
    by_test: dict[tuple[int, int, int], BenchResult] = {}
    for r in results:
        if r.status == "ok" and r.avg_ts > 0:
            by_test[(r.n_prompt, r.n_gen, r.n_depth)] = r
    out = LocalScore()
    for p, g, _ in LOCALSCORE_TESTS:
        pp, tg = by_test.get((p, 0, 0)), by_test.get((0, g, p))
        if pp is None or tg is None:
            out.missing += ([f"pp{p}"] if pp is None else []) + ([f"tg{g} @ d{p}"] if tg is None else [])
            continue
        ttft_ms = 1000.0 * (p / pp.avg_ts + 1.0 / tg.avg_ts)
        out.tests.append(LocalScoreTest(p, g, pp.avg_ts, tg.avg_ts, ttft_ms))
    if out.tests:
        out.avg_prompt_tps = statistics.fmean(t.prompt_tps for t in out.tests)
        out.avg_gen_tps = statistics.fmean(t.gen_tps for t in out.tests)
        out.avg_ttft_ms = statistics.fmean(t.ttft_ms for t in out.tests)
    out.missing = sorted(set(out.missing), key=out.missing.index)
    if out.complete:
        out.score = score_of(out.avg_prompt_tps, out.avg_gen_tps, out.avg_ttft_ms)
    return out


def localscore_jobs(jobs: Iterable[BenchJob], *, repetitions: int | None = None) -> list[BenchJob]:
    """The preset for each model and thread/offload/RPC setting of a sweep's jobs (other settings are
    LocalScore's)."""
    seen: dict[tuple[str, int, int, str], BenchJob] = {}
    for job in jobs:
        key = (str(job.model_path), job.params.n_threads, job.params.n_gpu_layers, job.params.rpc)
        if key not in seen:
            seen[key] = localscore_job(job.model_path, n_threads=job.params.n_threads,
                                       n_gpu_layers=job.params.n_gpu_layers, rpc=job.params.rpc,
                                       repetitions=repetitions or LOCALSCORE_REPETITIONS)
    return list(seen.values())


def score_lines(results: Iterable[BenchResult]) -> list[str]:
    """One line per model and setting: its LocalScore and the three means, or what is missing."""
    groups: dict[tuple[str, int, int], list[BenchResult]] = {}
    for r in results:
        groups.setdefault((r.model_filename or r.model_path, r.n_threads, r.n_gpu_layers), []).append(r)
    lines = []
    for (model, threads, ngl), rows in groups.items():
        s = localscore(rows)
        name = Path(model).name
        if s.complete:
            lines.append(f"LocalScore {s.score:.0f}  {name} (threads {threads}, ngl {ngl}): prompt "
                         f"{s.avg_prompt_tps:.1f} t/s, generation {s.avg_gen_tps:.1f} t/s, time to first token "
                         f"{s.avg_ttft_ms:.0f} ms")
        else:
            lines.append(f"LocalScore not computed for {name}: {', '.join(s.missing)} did not run")
    return lines
