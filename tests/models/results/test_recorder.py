"""The one recorder setup the CLI and the GUI share: store, machine, energy meter, record_events."""

from __future__ import annotations

from typing import Any

import pytest

from models.bench.events import Finished, Progress, Result, Sample, Started
from models.results.recorder import open_recorder
from models.results.store import ResultsStore
from models.settings import Settings

from .conftest import MACHINE_A, make_result


def test_open_recorder_commits_results_with_the_settings_watts_as_an_energy_estimate() -> None:
    seen: list[str] = []
    record, close = open_recorder(machine=MACHINE_A, settings=Settings(system_power_watts=50.0),
                                  then=lambda job, event: seen.append(event.kind))
    job: Any = object()
    result = make_result(n_prompt=0, n_gen=16, ts=(100.0,))
    try:
        for event in (Started(pid=1), Progress(test="tg16", phase="rep", rep=0, of=1),
                      Sample(test="tg16", rep=0, ns=result.samples_ns[0]), Result(result=result.to_json()),
                      Finished(ok=True)):
            record(job, event.to_event())
    finally:
        close()
    assert seen == ["started", "progress", "sample", "result", "finished"]
    with ResultsStore() as store:  # the app's own store, in this test's isolated home
        (run,) = store.list_runs()
    assert run.machine == MACHINE_A and run.result.test == "tg16"
    # No sensor is readable on the test machines (if one is, it is measured, not estimated).
    assert run.energy is not None and run.energy.seconds > 0
    if run.energy.is_estimate:
        assert run.energy.source == "estimate (50 W)"
        assert run.energy.joules == pytest.approx(50.0 * run.energy.seconds)

