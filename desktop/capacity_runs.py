"""A load test against a running OpenAI-compatible server, for the Capacity page: the sweep on a job thread, each
level reported as it ends, the whole test kept in the results store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from models.bench.capacity.serving import LoadSummary, capacity_sentence
from models.results.measurements import Measurement

log = logging.getLogger(__name__)


def endpoint_sweep(plan: Any, endpoint: Any, *, stop: threading.Event, report: Callable[..., None],
                   name: str) -> list[LoadSummary]:
    """Run `plan` against `endpoint` until done or `stop` is set (blocking: call from a job); `report(kind,
    payload)` tells ("progress", text), ("level", LoadSummary) and ("unsaved", why) from this thread."""
    from models.bench.capacity.sweep import run_sweep
    from models.bench.capacity.endpoint import run_endpoint_level
    from models.errors import StoreError

    def level(concurrency: int, rate: float | None, shapes: list[Any], arrivals: list[float]) -> Any:
        report("progress", f"{concurrency} at once: {len(shapes)} requests …")
        return run_endpoint_level(endpoint, shapes, arrivals, concurrency=concurrency, closed_loop=rate is None,
                                  should_stop=stop.is_set)

    levels = run_sweep(plan, level, on_level=lambda summary, _records: report("level", summary),
                       should_stop=stop.is_set)
    if levels:
        try:
            _save_endpoint_test(plan, endpoint, levels, cancelled=stop.is_set(),
                                sentence=capacity_sentence(levels, model=name, machine=endpoint.url))
        except StoreError as error:  # the figures stay on screen; only keeping them failed
            report("unsaved", f"The load test was not saved: {error}")
    return levels


def _save_endpoint_test(plan: Any, endpoint: Any, levels: list[LoadSummary], *, sentence: str,
                        cancelled: bool) -> None:
    """Keep a load test against a server (its machine is this one, the client); the API key is never stored."""
    from dataclasses import asdict

    from models.machine.hardware import machine_fingerprint
    from models.results.measurements import record_measurement
    from models.results.store import ResultsStore

    settings = {"plan": plan.to_json(), "server_model": endpoint.model or "",
                "endpoint": {k: v for k, v in asdict(endpoint).items() if k != "api_key"}}
    measurement = Measurement(kind="load", target=endpoint.path, settings=settings, answer=sentence,
                              data={"levels": [level.to_json() for level in levels]}, machine=machine_fingerprint(),
                              status="cancelled" if cancelled else "ok")
    with ResultsStore() as store:
        record_measurement(store, measurement)
