"""One set of job rules: the sweep and the runner refuse the same jobs with the same words."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from models.bench.events import BenchEvent
from models.bench.runner import BenchRunner
from models.bench.spec import BenchJob, BenchSweep, check_job
from models.errors import BenchmarkError

# Each was refused by the sweep only; the runner started a worker for it (a job from the GUI queue or a file).
BAD_PARAMS = [({"poll": 101}, "poll must be 0 to 100"), ({"cpu_mask": "0xzz"}, "not a hex digit"),
              ({"split_mode": "diagonal"}, "split mode must be one of"), ({"main_gpu": -1}, "main_gpu"),
              ({"tensor_split": (1.0, -1.0)}, "cannot be negative")]
BAD_JOB = [({"numa": "everywhere"}, "numa must be one of"), ({"prio": 7}, "prio must be one of"),
           ({"delay": -1}, "delay must be at least 0")]


@pytest.mark.parametrize(("options", "message"), BAD_PARAMS + BAD_JOB)
def test_the_runner_refuses_what_the_sweep_refuses_without_starting_a_worker(
        make_job: Callable[..., BenchJob], options: dict[str, Any], message: str) -> None:
    job_level = {k: v for k, v in options.items() if k in ("numa", "prio", "delay")}
    job = dataclasses.replace(make_job(**{k: v for k, v in options.items() if k not in job_level}), **job_level)
    problem = check_job(job)
    assert problem is not None and message in problem
    events: list[BenchEvent] = []
    results = BenchRunner(on_event=lambda _j, e: events.append(e)).run([job])
    assert all(r.status == "failed" and r.error == problem for r in results)
    assert not any(e.kind == "started" for e in events)
    sweep_options = {k: (v if k in job_level else [v]) for k, v in options.items()}
    with pytest.raises(BenchmarkError) as refused:
        BenchSweep(models=[Path("m.gguf")], **sweep_options).validate()
    assert str(refused.value) == problem  # the same words from both


def test_a_good_job_passes_both(make_job: Callable[..., BenchJob]) -> None:
    assert check_job(make_job()) is None
    assert BenchSweep(models=[Path("m.gguf")], n_gpu_layers=[-1, 0]).jobs()
