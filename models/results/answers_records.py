"""Side-by-side answers in the results store: one measurement (kind answers) per model, the prompt, sampling
settings and seed in its settings, a group id shared by the answers to one prompt."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


def answers_settings(plan: Any, jobs: Sequence[Any]) -> dict[str, Any]:
    """What each answer of one prompt is kept with: the prompt, the sampling, the models asked and a group id."""
    return {"prompt": plan.prompt, "sampling": plan.sampling(), "group": uuid.uuid4().hex,
            "models": [job.model_path.name for job in jobs], "n_threads": jobs[0].params.n_threads if jobs else 0}


def open_answers_recorder(job: Any, settings: dict[str, Any]) -> Any:
    """A MeasurementRecorder (kind answers) for one model's answer; its one-line answer is the figures line."""
    from models.bench.quality.answers import figures
    from models.results.measurements import open_measurement_recorder

    return open_measurement_recorder(kind="answers", target="llama.cpp", settings=settings,
                                     model_path=job.model_path, meter_energy=False,
                                     answer=lambda m: figures(m.data) if m.data else "")


@dataclass
class AnswerGroup:
    """The answers kept for one prompt (one measurement per model, sharing a group id), in the order they ran."""

    group: str
    answers: list[Any]  # models.results.measurements.Measurement, kind answers

    @property
    def prompt(self) -> str:
        return str(self.answers[0].settings.get("prompt", ""))

    @property
    def sampling(self) -> dict[str, Any]:
        first = self.answers[0]
        return dict(first.settings.get("sampling") or first.data.get("sampling") or {})

    @property
    def started_at(self) -> str:
        return str(self.answers[0].started_at)

    @property
    def models(self) -> list[str]:
        return [m.model_name for m in self.answers]

    @property
    def ids(self) -> list[int]:
        return [m.id for m in self.answers]

    @property
    def status(self) -> str:
        """ok when every model answered; else the first other status (failed, cancelled)."""
        return next((m.status for m in self.answers if m.status != "ok"), "ok")


def stored_answer_groups(store: Any, *, limit: int | None = None) -> list[AnswerGroup]:
    """The answers kept in the store, grouped by prompt run, newest group first (at most `limit` groups)."""
    from models.results.measurement_report import answer_groups
    from models.results.measurements import list_measurements

    groups = [AnswerGroup(group=str(g[0].settings.get("group") or g[0].uid), answers=g)
              for g in answer_groups(list_measurements(store, kind="answers"))]
    groups.reverse()  # answer_groups gives the oldest first
    return groups[:limit] if limit is not None else groups


def delete_answer_group(store: Any, group: str) -> int:
    """Delete every answer kept under one group id; returns how many went (0 for an unknown group)."""
    from models.results.measurements import delete_measurements, list_measurements

    ids = [m.id for m in list_measurements(store, kind="answers") if str(m.settings.get("group") or m.uid) == group]
    deleted = delete_measurements(store, ids)
    log.info("Deleted %d answers of group %s", deleted, group)
    return deleted
