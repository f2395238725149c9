"""What to benchmark: the parameter sweep, the concrete runs it expands to, and the result of one test."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from models.bench.trust.adaptive import AdaptivePlan
from models.errors import BenchmarkError

if TYPE_CHECKING:  # the measuring methods' plans; imported when a job carries one (quality pulls in numpy)
    from models.bench.capacity.batched import BatchedPlan
    from models.bench.capacity.sweep import LoadPlan
    from models.bench.quality.answers import AnswersPlan
    from models.bench.quality.job import QualityPlan

FlashAttn = Literal["on", "off", "auto"]
KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
TestKind = Literal["pp", "tg", "pg"]

SplitMode = Literal["none", "layer", "row", "tensor"]
SPLIT_MODES: tuple[str, ...] = ("none", "layer", "row", "tensor")  # llama_split_mode's order
NUMA_MODES = ("disabled", "distribute", "isolate", "numactl")  # ggml_numa_strategy's order
PRIORITIES = (-1, 0, 1, 2, 3)  # ggml_sched_priority: low, normal, medium, high, realtime

# llama-bench's defaults (-p 512 -n 128 -r 5, n_batch 2048, n_ubatch 512, f16 KV, ngl -1 = every layer and the
# output, fa auto, load mode auto, poll 50, no CPU mask, layer split).
DEFAULT_N_PROMPT = 512
DEFAULT_N_GEN = 128
DEFAULT_REPETITIONS = 5
DEFAULT_N_BATCH = 2048
DEFAULT_N_UBATCH = 512
DEFAULT_N_GPU_LAYERS = -1
DEFAULT_POLL = 50
DEFAULT_CPU_MASK = "0x0"


def default_threads() -> int:
    """llama-bench's default: llama.cpp's count of cores useful for math (performance cores only on hybrid CPUs)."""
    from models.bench.cores import cpu_get_num_math

    return cpu_get_num_math()


def parse_cpu_mask(mask: str) -> list[bool]:
    """llama.cpp's parse_cpu_mask: a hex mask (optional 0x, at most 128 digits) as one flag per CPU, lowest first."""
    digits = mask[2:] if mask[:2].lower() == "0x" else mask
    if not digits:
        raise BenchmarkError(f"CPU mask {mask!r} has no hex digits.")
    flags = [False] * 512
    digits = digits[:128]
    for position, char in enumerate(reversed(digits)):
        try:
            value = int(char, 16)
        except ValueError:
            raise BenchmarkError(f"CPU mask {mask!r}: {char!r} is not a hex digit.") from None
        for bit in range(4):
            if value & (1 << bit):
                flags[4 * position + bit] = True
    return flags


@dataclass(frozen=True)
class BenchParams:
    """One load-and-context configuration (a point of the sweep), shared by every test run with it."""

    n_threads: int
    n_gpu_layers: int = DEFAULT_N_GPU_LAYERS  # -1: every layer and the output, as llama.cpp reads a negative value
    n_batch: int = DEFAULT_N_BATCH
    n_ubatch: int = DEFAULT_N_UBATCH
    flash_attn: FlashAttn = "auto"
    type_k: str = "f16"
    type_v: str = "f16"
    use_mmap: bool | None = None  # -mmp 1/0 forces mmap or reading; None is llama-bench's load mode "auto"
    cpu_mask: str = DEFAULT_CPU_MASK  # hex; 0x0 keeps the default affinity
    cpu_strict: bool = False
    poll: int = DEFAULT_POLL  # 0 (no polling) .. 100 (aggressive), the threadpool's
    split_mode: SplitMode = "layer"
    main_gpu: int = 0
    tensor_split: tuple[float, ...] = ()  # share per GPU; empty: llama.cpp decides
    no_kv_offload: bool = False
    rpc: str = ""  # llama-bench's -rpc: RPC servers HOST:PORT,... whose devices join the local ones ("": none)

    @property
    def load_mode(self) -> str:
        """llama-bench's load_mode name: auto unless -mmp asked for mmap (1) or reading into memory (0)."""
        return "auto" if self.use_mmap is None else ("mmap" if self.use_mmap else "none")


@dataclass(frozen=True)
class BenchTest:
    """One timed test: ppN (n_gen 0), tgN (n_prompt 0) or pgN,M (both), at a depth."""

    n_prompt: int
    n_gen: int
    n_depth: int = 0

    @property
    def kind(self) -> TestKind:
        if self.n_gen == 0:
            return "pp"
        if self.n_prompt == 0:
            return "tg"
        return "pg"

    @property
    def name(self) -> str:
        """llama-bench's test label: pp512, tg128, pp512+tg128, with @dN for a depth."""
        label = {"pp": f"pp{self.n_prompt}", "tg": f"tg{self.n_gen}",
                 "pg": f"pp{self.n_prompt}+tg{self.n_gen}"}[self.kind]
        return f"{label} @ d{self.n_depth}" if self.n_depth else label

    @property
    def n_ctx(self) -> int:
        return self.n_prompt + self.n_gen + self.n_depth


@dataclass(frozen=True)
class BenchJob:
    """One worker's job: one model loaded with one parameter set, running its tests in order."""

    model_path: Path
    params: BenchParams
    tests: tuple[BenchTest, ...]
    repetitions: int = DEFAULT_REPETITIONS
    ttft_prompt_tokens: int = 0  # >0: also time to first token for a real chat prompt of about this length
    seed: int = 1234
    # llama-bench's process-wide options (not swept): NUMA strategy, priority, seconds of rest before each test.
    numa: str = "disabled"
    prio: int = 0
    delay: int = 0
    # Another measuring method instead of llama-bench's tests (at most one): llama-batched-bench's, a serving
    # load test, or llama-perplexity's.
    batched: BatchedPlan | None = None
    load: LoadPlan | None = None
    quality: QualityPlan | None = None
    answers: AnswersPlan | None = None  # one prompt answered (models.bench.quality.answers)
    # -r auto: repeat each test until its 95% interval is within the plan's target (repetitions is then unused).
    adaptive: AdaptivePlan | None = None

    @property
    def method(self) -> str:
        """Which measuring method the worker runs: "tests" (llama-bench), "batched", "load", "quality" or "answers"."""
        for name in ("batched", "load", "quality", "answers"):
            if getattr(self, name) is not None:
                return name
        return "tests"

    def to_json(self) -> dict[str, Any]:
        data = {"model_path": str(self.model_path), "params": asdict(self.params),
                "tests": [asdict(t) for t in self.tests], "repetitions": self.repetitions,
                "ttft_prompt_tokens": self.ttft_prompt_tokens, "seed": self.seed, "numa": self.numa,
                "prio": self.prio, "delay": self.delay}
        if self.adaptive is not None:
            data["adaptive"] = self.adaptive.to_json()
        for name in ("batched", "load", "quality", "answers"):
            plan = getattr(self, name)
            if plan is not None:
                data[name] = plan.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchJob:
        params = dict(data["params"])
        params["tensor_split"] = tuple(float(x) for x in params.get("tensor_split") or ())
        return cls(model_path=Path(data["model_path"]), params=BenchParams(**params),
                   tests=tuple(BenchTest(**t) for t in data["tests"]),
                   repetitions=int(data["repetitions"]),
                   ttft_prompt_tokens=int(data.get("ttft_prompt_tokens", 0)), seed=int(data.get("seed", 1234)),
                   numa=str(data.get("numa", "disabled")), prio=int(data.get("prio", 0)),
                   delay=int(data.get("delay", 0)),
                   adaptive=AdaptivePlan.from_json(data["adaptive"]) if data.get("adaptive") else None,
                   **_plans(data))


def _plans(data: dict[str, Any]) -> dict[str, Any]:
    """The method plans a job's JSON carries, as their dataclasses."""
    plans: dict[str, Any] = {}
    if data.get("batched"):
        from models.bench.capacity.batched import BatchedPlan

        plans["batched"] = BatchedPlan.from_json(data["batched"])
    if data.get("load"):
        from models.bench.capacity.sweep import LoadPlan

        plans["load"] = LoadPlan.from_json(data["load"])
    if data.get("quality"):
        from models.bench.quality.job import QualityPlan

        plans["quality"] = QualityPlan.from_json(data["quality"])
    if data.get("answers"):
        from models.bench.quality.answers import AnswersPlan

        plans["answers"] = AnswersPlan.from_json(data["answers"])
    return plans


def check_job(job: BenchJob) -> str | None:
    """Why a job cannot run (impossible parameters), or None: the one set of rules, used by the sweep before it
    expands and by the runner before any process starts (a job can come from the GUI, a queue or a file)."""
    p = job.params
    for name, value in (("threads", p.n_threads), ("n_batch", p.n_batch), ("n_ubatch", p.n_ubatch),
                        ("repetitions", job.repetitions)):
        if value < 1:
            return f"{name} must be at least 1, got {value}."
    if job.adaptive is not None and job.adaptive.problem():
        return f"-r auto: {job.adaptive.problem()}"
    if p.n_gpu_layers < -1:
        return f"n_gpu_layers must be -1 (all) or more, got {p.n_gpu_layers}."
    if p.main_gpu < 0:
        return f"main_gpu must be at least 0, got {p.main_gpu}."
    if p.n_ubatch > p.n_batch:
        return f"n_ubatch ({p.n_ubatch}) cannot be larger than n_batch ({p.n_batch})."
    for kind in (p.type_k, p.type_v):
        if kind not in KV_TYPES:
            return f"Unknown KV cache type {kind!r}; use one of {', '.join(KV_TYPES)}."
    if p.flash_attn not in ("on", "off", "auto"):
        return f"flash_attn must be on, off or auto, got {p.flash_attn!r}."
    if not 0 <= p.poll <= 100:
        return f"poll must be 0 to 100, got {p.poll}."
    try:
        parse_cpu_mask(p.cpu_mask)
    except BenchmarkError as error:
        return str(error)
    if p.split_mode not in SPLIT_MODES:
        return f"split mode must be one of {', '.join(SPLIT_MODES)}, got {p.split_mode!r}."
    if p.rpc:
        from models.machine.rpc import check_endpoints

        problem = check_endpoints(p.rpc)
        if problem:
            return problem
    if any(share < 0 for share in p.tensor_split):
        return f"tensor split shares cannot be negative: {'/'.join(map(str, p.tensor_split))}."
    if job.numa not in NUMA_MODES:
        return f"numa must be one of {', '.join(NUMA_MODES)}, got {job.numa!r}."
    if job.prio not in PRIORITIES:
        return f"prio must be one of -1, 0, 1, 2, 3 (low .. realtime), got {job.prio}."
    if job.delay < 0:
        return f"delay must be at least 0 seconds, got {job.delay}."
    plans = [plan for plan in (job.batched, job.load, job.quality, job.answers) if plan is not None]
    if len(plans) > 1:
        return "A job runs one measuring method: batched, load, quality or answers, not several."
    if plans:
        return plans[0].problem()
    if not job.tests:
        return "The job has no tests."
    for test in job.tests:
        if min(test.n_prompt, test.n_gen, test.n_depth) < 0 or test.n_prompt + test.n_gen == 0:
            return (f"Test {test.name!r} has impossible sizes (prompt {test.n_prompt}, gen {test.n_gen}, "
                    f"depth {test.n_depth}).")
    if job.ttft_prompt_tokens < 0:
        return f"The TTFT prompt length must be at least 0, got {job.ttft_prompt_tokens}."
    return None


@dataclass
class BenchSweep:
    """Every parameter as a list; the cross product is benchmarked (llama-bench's comma lists)."""

    models: list[Path]
    n_prompt: list[int] = field(default_factory=lambda: [DEFAULT_N_PROMPT])
    n_gen: list[int] = field(default_factory=lambda: [DEFAULT_N_GEN])
    n_pg: list[tuple[int, int]] = field(default_factory=list)
    n_depth: list[int] = field(default_factory=lambda: [0])
    n_threads: list[int] = field(default_factory=lambda: [default_threads()])
    n_gpu_layers: list[int] = field(default_factory=lambda: [DEFAULT_N_GPU_LAYERS])
    n_batch: list[int] = field(default_factory=lambda: [DEFAULT_N_BATCH])
    n_ubatch: list[int] = field(default_factory=lambda: [DEFAULT_N_UBATCH])
    flash_attn: list[FlashAttn] = field(default_factory=lambda: ["auto"])
    type_k: list[str] = field(default_factory=lambda: ["f16"])
    type_v: list[str] = field(default_factory=lambda: ["f16"])
    use_mmap: list[bool | None] = field(default_factory=lambda: [None])  # None: load mode auto
    cpu_mask: list[str] = field(default_factory=lambda: [DEFAULT_CPU_MASK])
    cpu_strict: list[bool] = field(default_factory=lambda: [False])
    poll: list[int] = field(default_factory=lambda: [DEFAULT_POLL])
    split_mode: list[SplitMode] = field(default_factory=lambda: ["layer"])
    main_gpu: list[int] = field(default_factory=lambda: [0])
    tensor_split: list[tuple[float, ...]] = field(default_factory=lambda: [()])
    no_kv_offload: list[bool] = field(default_factory=lambda: [False])
    rpc: list[str] = field(default_factory=lambda: [""])  # each entry one pool of servers (comma-separated)
    repetitions: int = DEFAULT_REPETITIONS
    ttft_prompt_tokens: int = 0
    numa: str = "disabled"
    prio: int = 0
    delay: int = 0
    adaptive: AdaptivePlan | None = None  # -r auto (models.bench.trust.adaptive)

    def validate(self) -> None:
        """Refuse impossible parameters before any worker starts, with a message naming the parameter. What a
        list means is checked here; every parameter set then goes through check_job, as the runner's jobs do."""
        if not self.models:
            raise BenchmarkError("No model to benchmark.")
        lists = ("n_prompt", "n_gen", "n_depth", "n_threads", "n_gpu_layers", "n_batch", "n_ubatch", "flash_attn",
                 "type_k", "type_v", "use_mmap", "cpu_mask", "cpu_strict", "poll", "split_mode", "main_gpu",
                 "tensor_split", "no_kv_offload", "rpc")
        labels = {"n_threads": "threads", "n_depth": "depth"}
        for name in lists:
            if not getattr(self, name):
                raise BenchmarkError(f"{labels.get(name, name)}: the list is empty.")
        # tests() leaves out sizes of 0 (llama-bench's "-p 0"); a negative one would vanish there unsaid.
        for name, values in (("n_prompt", self.n_prompt), ("n_gen", self.n_gen)):
            for value in values:
                if int(value) < 0:
                    raise BenchmarkError(f"{name} must be at least 0, got {value}.")
        tests = self.tests()
        if not tests:
            raise BenchmarkError("Nothing to run: every test has 0 prompt and 0 generated tokens.")
        for params in self.params():
            problem = check_job(BenchJob(model_path=Path(self.models[0]), params=params, tests=tests,
                                         repetitions=self.repetitions, ttft_prompt_tokens=self.ttft_prompt_tokens,
                                         numa=self.numa, prio=self.prio, delay=self.delay, adaptive=self.adaptive))
            if problem:
                raise BenchmarkError(problem)

    def tests(self) -> tuple[BenchTest, ...]:
        """The tests in llama-bench's order: every pp, then every tg, then every pg, each at every depth."""
        out: list[BenchTest] = []
        for depth in self.n_depth:
            out += [BenchTest(n_prompt=p, n_gen=0, n_depth=depth) for p in self.n_prompt if p > 0]
            out += [BenchTest(n_prompt=0, n_gen=g, n_depth=depth) for g in self.n_gen if g > 0]
            out += [BenchTest(n_prompt=p, n_gen=g, n_depth=depth) for p, g in self.n_pg if p > 0 or g > 0]
        return tuple(out)

    def params(self) -> list[BenchParams]:
        names = ("n_threads", "n_gpu_layers", "n_batch", "n_ubatch", "flash_attn", "type_k", "type_v", "use_mmap",
                 "cpu_mask", "cpu_strict", "poll", "split_mode", "main_gpu", "tensor_split", "no_kv_offload", "rpc")
        return [BenchParams(**dict(zip(names, values)))
                for values in itertools.product(*(getattr(self, name) for name in names))]

    def jobs(self) -> list[BenchJob]:
        """One job per model and parameter set; each job is one worker process."""
        self.validate()
        tests = self.tests()
        return [BenchJob(model_path=Path(model), params=params, tests=tests, repetitions=self.repetitions,
                         ttft_prompt_tokens=self.ttft_prompt_tokens, numa=self.numa, prio=self.prio,
                         delay=self.delay, adaptive=self.adaptive)
                for model in self.models for params in self.params()]


@dataclass
class BenchResult:
    """One test's outcome: llama-bench's fields first (same names, same meaning), then Tokenometer's."""

    # -- llama-bench's fields --
    build_commit: str = ""
    build_number: int = 0
    cpu_info: str = ""
    gpu_info: str = ""
    backends: str = ""
    model_filename: str = ""
    model_type: str = ""
    model_size: int = 0
    model_n_params: int = 0
    n_batch: int = 0
    n_ubatch: int = 0
    n_threads: int = 0
    cpu_mask: str = DEFAULT_CPU_MASK
    cpu_strict: bool = False
    poll: int = DEFAULT_POLL
    type_k: str = "f16"
    type_v: str = "f16"
    n_gpu_layers: int = 0
    split_mode: str = "layer"
    main_gpu: int = 0
    no_kv_offload: bool = False
    flash_attn: str = "auto"
    tensor_split: str = "0.00"  # llama-bench's text: shares with two decimals joined by "/"
    load_mode: str = "auto"  # what was asked: auto (llama-bench's default), mmap or none
    use_mmap: bool = True  # what llama.cpp did: weights mapped from the file
    n_prompt: int = 0
    n_gen: int = 0
    n_depth: int = 0
    test_time: str = ""  # ISO 8601, UTC
    avg_ns: int = 0
    stddev_ns: int = 0
    avg_ts: float = 0.0
    stddev_ts: float = 0.0
    samples_ns: list[int] = field(default_factory=list)
    samples_ts: list[float] = field(default_factory=list)
    # -- Tokenometer's fields --
    test: str = ""  # pp512, tg128, ...
    status: str = "ok"  # ok | failed | cancelled
    error: str = ""
    load_ms: float = 0.0  # llama_model_load_from_file's wall time; see load_page_cache
    load_page_cache: str = ""  # the file before the load: "warm" (>= 90% in the page cache), "cold" (<= 10%),
    # "partial", or "" where it cannot be known; a cold load reads the disk, a warm one only maps memory
    load_cached_fraction: float = -1.0  # share of the file's pages in the page cache before the load (-1: unknown)
    # Time to first token as Tokenometer measures it: a real chat prompt (the model's template) prefilled and the
    # first token sampled; the mean of the timed runs (0 when not measured). LocalScore's TTFT differs:
    # a random-token prompt's prefill plus one decode step.
    ttft_ms: float = 0.0
    ttft_prompt_tokens: int = 0
    ttft_samples_ms: list[float] = field(default_factory=list)  # every timed TTFT repetition
    mem_rss_anon: int = 0  # bytes, private memory of the worker at the end of the test
    mem_rss_file: int = 0  # bytes, file-backed resident memory (mmap'd weights)
    mem_peak: int = 0  # bytes, VmHWM of the worker
    buf_model: int = 0  # bytes, llama.cpp's logged buffer sizes, summed over devices
    buf_kv: int = 0
    buf_compute: int = 0
    buf_output: int = 0
    buffers: dict[str, int] = field(default_factory=dict)  # per "device:kind" (e.g. "CPU:model")
    vram_used: int = 0  # bytes, where the backend or NVML reports it
    n_ctx: int = 0
    system_info: str = ""
    llama_cpp_python_version: str = ""
    model_sha256: str = ""
    model_path: str = ""
    fit_estimate: dict[str, int] = field(default_factory=dict)  # models.fit.estimate's estimate for this run, bytes
    # The 95% confidence interval of avg_ts (Student t over the samples, half-width in t/s; 0 below 2 samples);
    # with -r auto the target it had to reach (a fraction of the mean) and whether it did.
    ci95_ts: float = 0.0
    ci_target: float = 0.0
    ci_met: bool = False
    # What the machine was doing during the test (models.bench.trust.conditions; a sensor not read is left out) and the
    # one trust label drawn from it and the samples (models.bench.trust.labels: ok, noisy, throttled, swapped, partial
    # offload; "" when not assessed), with the reasons joined by "; ".
    conditions: dict[str, Any] = field(default_factory=dict)
    trust: str = ""
    trust_reasons: str = ""
    # Generation tests: the speed models.fit predicted for this machine before the result was known (predicted_ts,
    # low_ts, high_ts, ceiling_ts, share_of_limit, bytes_per_token, n_models); {} where not predicted.
    speed_estimate: dict[str, float] = field(default_factory=dict)
    rpc: str = ""  # the RPC servers used (llama-bench's -rpc), "" for none
    # The pool measured just before the test: each endpoint with its devices (memory as the server reports it),
    # round trip and bandwidth, and the local devices (models.machine.rpc_attach).
    topology: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchResult:
        known = set(cls.field_names())
        return cls(**{key: value for key, value in data.items() if key in known})
