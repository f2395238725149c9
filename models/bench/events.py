"""The worker's event protocol: one JSON object per line, the only contract between worker, CLI and GUI."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["started", "progress", "sample", "log", "result", "failure", "memory", "finished"]
EVENT_KINDS: tuple[str, ...] = ("started", "progress", "sample", "log", "result", "failure", "memory", "finished")


@dataclass
class BenchEvent:
    """One event. `data` depends on `kind`:

    - started:  {"job": BenchJob JSON, "pid": int}
    - progress: {"test": "pp512", "phase": "load"|"warmup"|"depth"|"rep"|"ttft", "rep": i, "of": n,
                 "fraction": 0..1 of the whole job}
    - sample:   {"test": "pp512", "rep": i, "ns": int, "ts": float}
    - log:      {"level": "info"|"warning"|"error", "message": str}  (llama.cpp's own log lines included)
    - memory:   {"rss_anon": int, "rss_file": int, "peak": int}  (runner's periodic sampling of the worker)
    - result:   {"result": BenchResult JSON}  (one per test; status "failed"/"cancelled" results carry no numbers)
    - failure:  {"message": str, "detail": str, "log_tail": [str]}  (the job as a whole failed)
    - finished: {"ok": bool, "cancelled": true (only when cancelled)}  (always a job's last event; the runner
                sends it after any failed/cancelled rows it adds for tests the worker never reported)
    - sample may also carry "perf": llama.cpp's own counters (worker run with --perf)
    """

    kind: EventKind
    data: dict[str, Any] = field(default_factory=dict)

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
