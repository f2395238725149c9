"""The worker's event protocol: one JSON object per line, one dataclass per kind; the only contract between worker, CLI and GUI."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

from models.bench.spec import BenchResult

log = logging.getLogger(__name__)

# Where the worker is inside a test; "done" closes each test (the worker always sent it; the old schema missed it).
Phase = Literal["load", "warmup", "depth", "rep", "ttft", "done", "run"]
PHASES: tuple[str, ...] = get_args(Phase)


@dataclass(frozen=True)
class TypedEvent:
    """Base of the event kinds; `kind` is the wire name ("event" in the JSON line)."""

    kind: ClassVar[str] = ""

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> TypedEvent:
        # Keys a newer worker adds are kept out rather than refused: the wire format may grow.
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def to_data(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_event(self) -> BenchEvent:
        return BenchEvent(self.kind, self.to_data())


@dataclass(frozen=True)
class Started(TypedEvent):
    """The worker process is up and has read its job."""

    kind: ClassVar[str] = "started"
    job: dict[str, Any] = field(default_factory=dict)  # BenchJob JSON
    pid: int = 0


@dataclass(frozen=True)
class Progress(TypedEvent):
    """A step inside a test; `rep` counts from 0 on the wire, `fraction` is of the whole job (0..1)."""

    kind: ClassVar[str] = "progress"
    test: str = ""
    phase: str = "load"  # one of PHASES
    rep: int = 0
    of: int = 0
    fraction: float = 0.0

    @property
    def text(self) -> str:
        """What a person reads, the same in the CLI and the GUI: "pp512 rep 1/5" (counted from 1)."""
        return progress_text(self)


@dataclass(frozen=True)
class Sample(TypedEvent):
    """One timed repetition; `perf` holds llama.cpp's own counters when the worker runs with --perf."""

    kind: ClassVar[str] = "sample"
    test: str = ""
    rep: int = 0  # from 0, as on the wire
    ns: int = 0
    ts: float = 0.0
    perf: dict[str, Any] | None = None

    def to_data(self) -> dict[str, Any]:
        data = super().to_data()
        if data["perf"] is None:
            del data["perf"]  # absent, not null, as the worker writes it
        return data


@dataclass(frozen=True)
class Log(TypedEvent):
    """A log line: the worker's own, or llama.cpp's (source "llama.cpp"); level debug..error."""

    kind: ClassVar[str] = "log"
    level: str = "info"
    message: str = ""
    source: str = ""

    def to_data(self) -> dict[str, Any]:
        data = super().to_data()
        if not data["source"]:
            del data["source"]
        return data


@dataclass(frozen=True)
class Memory(TypedEvent):
    """The runner's periodic sample of the worker's memory, in bytes (see models.bench.procmem)."""

    kind: ClassVar[str] = "memory"
    rss_anon: int = 0
    rss_file: int = 0
    peak: int = 0
    rss: int = 0


@dataclass(frozen=True)
class Result(TypedEvent):
    """One test's row; failed or cancelled rows carry no numbers."""

    kind: ClassVar[str] = "result"
    result: dict[str, Any] = field(default_factory=dict)  # BenchResult JSON

    @property
    def bench_result(self) -> BenchResult:
        return BenchResult.from_json(self.result)


@dataclass(frozen=True)
class Failure(TypedEvent):
    """The job as a whole failed: why, the traceback or detail, and llama.cpp's last log lines."""

    kind: ClassVar[str] = "failure"
    message: str = ""
    detail: str = ""
    log_tail: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Finished(TypedEvent):
    """Always a job's last event; the runner sends it after any rows it adds for tests never reported."""

    kind: ClassVar[str] = "finished"
    ok: bool = False
    cancelled: bool = False

    def to_data(self) -> dict[str, Any]:
        return {"ok": self.ok, **({"cancelled": True} if self.cancelled else {})}


@dataclass(frozen=True)
class QualityChunk(TypedEvent):
    """A quality job's progress: chunks done of `of`, with the running perplexity (and KLD against a reference)."""

    kind: ClassVar[str] = "quality_chunk"
    chunk: int = 0  # chunks done, from 1
    of: int = 0
    fraction: float = 0.0
    ppl: float = 0.0
    ppl_err: float = 0.0
    nll: float = 0.0
    kld: float | None = None
    same_top: float | None = None


@dataclass(frozen=True)
class Quality(TypedEvent):
    """A quality job's result: models.bench.quality.perplexity.QualityResult as JSON, plus the text's name."""

    kind: ClassVar[str] = "quality"
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Batched(TypedEvent):
    """One point of a batched sweep: its label, and its row (llama-batched-bench's keys plus the settings), or
    None when the test needs more KV cells than the context holds (llama-batched-bench skips it too)."""

    kind: ClassVar[str] = "batched"
    test: str = ""
    row: dict[str, Any] | None = None


@dataclass(frozen=True)
class LoadLevel(TypedEvent):
    """One load level of a serving test: models.bench.capacity.serving.LoadSummary as JSON, and each request's timings."""

    kind: ClassVar[str] = "load_level"
    summary: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class AnswerPiece(TypedEvent):
    """Text of an answer as it streams: the piece the n-th generated token adds (models.bench.quality.answers)."""

    kind: ClassVar[str] = "answer_piece"
    text: str = ""
    n: int = 0


@dataclass(frozen=True)
class Answer(TypedEvent):
    """One model's answer to the prompt: models.bench.quality.answers.Answer as JSON, with the prompt and the model."""

    kind: ClassVar[str] = "answer"
    result: dict[str, Any] = field(default_factory=dict)


EVENT_TYPES: tuple[type[TypedEvent], ...] = (Started, Progress, Sample, Log, Memory, Result, Failure, Finished,
                                              QualityChunk, Quality, AnswerPiece, Answer, Batched, LoadLevel)
EVENT_KINDS: tuple[str, ...] = tuple(t.kind for t in EVENT_TYPES)
_BY_KIND: dict[str, type[TypedEvent]] = {t.kind: t for t in EVENT_TYPES}
EventKind = str  # one of EVENT_KINDS


def progress_text(event: Progress) -> str:
    """One wording of progress for every front end; repetitions count from 1 for people, 0 on the wire."""
    if event.phase == "rep":
        step = f"rep {event.rep + 1}/{event.of}"
    elif event.phase == "depth":
        step = f"filling the context before rep {event.rep + 1}/{event.of}"
    elif event.phase == "ttft":
        # The TTFT loop runs one untimed warmup first (rep 0), then `of` timed runs (1..of).
        step = "TTFT warmup" if event.rep == 0 else f"TTFT {event.rep}/{event.of}"
    elif event.phase == "load":
        step = "loading the model"
    elif event.phase == "run":  # one point of a batched sweep or one load level
        step = f"{event.rep + 1}/{event.of}"
    else:
        step = event.phase
    test = event.test if event.test and event.test != "ttft" else ""
    return f"{test} {step}".strip()


@dataclass
class BenchEvent:
    """One event on the wire: `kind` and its JSON `data`; `typed` gives the kind's dataclass."""

    kind: EventKind
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def typed(self) -> TypedEvent:
        """The event as its kind's dataclass; raises ValueError for a kind the protocol does not have."""
        kind = _BY_KIND.get(self.kind)
        if kind is None:
            raise ValueError(f"Not a benchmark event kind: {self.kind!r} (known: {', '.join(EVENT_KINDS)}).")
        return kind.from_data(self.data)

    def to_line(self) -> str:
        return json.dumps({"event": self.kind, **self.data}, separators=(",", ":"))

    @classmethod
    def from_line(cls, line: str) -> BenchEvent | None:
        """Parse one worker line; None for anything that is not a protocol event (stray output)."""
        try:
            payload = json.loads(line)
        except ValueError:
            return None
        if not isinstance(payload, dict) or payload.get("event") not in EVENT_KINDS:
            return None
        kind = payload.pop("event")
        return cls(kind=kind, data=payload)
