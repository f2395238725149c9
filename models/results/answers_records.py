"""Side-by-side answers in the results store: one measurement (kind answers) per model, the prompt, sampling
settings and seed in its settings, a group id shared by the answers to one prompt."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


def answers_settings(plan: Any, jobs: Sequence[Any]) -> dict[str, Any]:
    """What each answer of one prompt is kept with: the prompt, the sampling, the models asked and a group id."""
    return {"prompt": plan.prompt, "sampling": plan.sampling(), "group": uuid.uuid4().hex,
            "models": [job.model_path.name for job in jobs], "n_threads": jobs[0].params.n_threads if jobs else 0}


def open_answers_recorder(job: Any, settings: dict[str, Any]) -> Any:
    """A MeasurementRecorder (kind answers) for one model's answer; its one-line answer is the figures line."""
    from models.bench.answers import figures
    from models.results.measurements import open_measurement_recorder

    return open_measurement_recorder(kind="answers", target="llama.cpp", settings=settings,
                                     model_path=job.model_path, meter_energy=False,
                                     answer=lambda m: figures(m.data) if m.data else "")
