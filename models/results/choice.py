"""The choice: quality against generation speed and peak memory for the models measured here, the Pareto fronts,
and the one-sentence recommendation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from models.results.quality_records import QualityPoint, stored_quality
from models.results.store import ResultsStore, RunFilter, RunRecord, fingerprint_sha
from models.units import fmt_bytes, fmt_rate

log = logging.getLogger(__name__)

Metric = Literal["kld", "bits_per_byte"]
METRIC_LABELS = {"kld": "mean KLD", "bits_per_byte": "bits per byte"}
DEFAULT_MIN_TG = 10.0  # t/s: faster than most people read, so the answer does not hold the reader up


@dataclass(frozen=True)
class Speed:
    """A model file's generation speed and the peak memory of the benchmark that measured it."""

    tg: float  # t/s of its newest plain generation test
    mem_peak: int  # bytes: the worker's peak resident memory over that sitting
    test: str
    run_id: int
    repo: str = ""


@dataclass(frozen=True)
class ChoicePoint:
    """One model file on the charts: lower `quality` is better (KLD or bits per byte), higher `tg`, lower memory."""

    file: str
    repo: str
    quant: str
    quality: float
    tg: float
    mem_peak: int
    quality_id: int  # the measurement's id
    run_id: int  # the llama-bench run's id
    on_speed_front: bool = False
    on_memory_front: bool = False


@dataclass
class Choice:
    """The points of one comparable set, which quality metric ranks them, and the recommendation."""

    metric: Metric | None
    points: list[ChoicePoint] = field(default_factory=list)
    reference_model: str = ""  # the KLD reference's model file
    unmatched: list[str] = field(default_factory=list)  # files with quality but no speed measured, or the reverse
    recommendation: str = ""
    recommended: ChoicePoint | None = None

    @property
    def metric_label(self) -> str:
        return METRIC_LABELS.get(self.metric or "", "quality")


def pareto_front(points: Sequence[ChoicePoint], *, against: Literal["tg", "mem_peak"]) -> list[ChoicePoint]:
    """The points no other point beats: at least as good in quality and in `against` (higher tg, lower memory),
    better in one of the two. Sorted along the x axis (tg or memory ascending)."""

    def x(p: ChoicePoint) -> float:
        return -p.tg if against == "tg" else float(p.mem_peak)  # smaller is better for both, as quality

    front = [p for p in points
             if not any(x(o) <= x(p) and o.quality <= p.quality and (x(o) < x(p) or o.quality < p.quality)
                        for o in points)]
    return sorted(front, key=lambda p: p.tg if against == "tg" else p.mem_peak)


def speeds_here(store: ResultsStore, machine: dict[str, Any]) -> dict[str, Speed]:
    """Per model file name, its newest plain generation test (tgN, no prompt, no depth) on this machine, with
    the highest peak memory over the runs of the same sitting (the worker's VmHWM grows over a job)."""
    runs = store.list_runs(filters=RunFilter(machine_key=fingerprint_sha(machine), status="ok"))
    by_job: dict[str, list[RunRecord]] = {}
    for rec in runs:
        by_job.setdefault(rec.job, []).append(rec)
    speeds: dict[str, Speed] = {}
    for rec in runs:  # newest first: the first tg run of a file wins
        r = rec.result
        name = _file_of(rec)
        if name in speeds or not (r.n_gen > 0 and r.n_prompt == 0 and r.n_depth == 0 and r.avg_ts > 0):
            continue
        peak = max((o.result.mem_peak for o in by_job.get(rec.job, [rec]) if _file_of(o) == name), default=0)
        speeds[name] = Speed(tg=r.avg_ts, mem_peak=int(peak or r.mem_peak), test=r.test, run_id=rec.id,
                             repo=str(rec.model.get("repo") or ""))
    return speeds


def _file_of(rec: RunRecord) -> str:
    return str(rec.model.get("file") or Path(rec.result.model_filename or rec.result.model_path).name)


def _comparable(quality: list[QualityPoint], files: set[str]) -> tuple[Metric | None, dict[str, QualityPoint], str]:
    """The set of quality results that rank together and covers most files with a speed: one KLD reference (of
    at least two files), else one text at one chunk size for bits per byte. Newest result per file."""
    best: tuple[int, int, Metric | None, dict[str, QualityPoint], str] = (0, 0, None, {}, "")
    groups: dict[tuple[Metric, str], dict[str, QualityPoint]] = {}
    for q in quality:  # newest first
        if q.kld is not None and q.reference_key:
            groups.setdefault(("kld", q.reference_key), {}).setdefault(q.file, q)
        groups.setdefault(("bits_per_byte", q.text_key), {}).setdefault(q.file, q)
    for (metric, _key), members in groups.items():
        covered = len(set(members) & files)
        if metric == "kld" and covered < 2:
            continue  # one file against a reference ranks nothing; bits per byte may still rank it
        score = (covered, 1 if metric == "kld" else 0)  # KLD wins a tie: it measures the quant's loss directly
        if score > best[:2]:
            reference = next(iter(members.values())).reference_model if metric == "kld" else ""
            best = (*score, metric, members, reference)
    return best[2], best[3], best[4]


def build_choice(store: ResultsStore, *, machine: dict[str, Any], memory_bytes: int,
                 min_tg: float = DEFAULT_MIN_TG) -> Choice:
    """The models measured on this machine, their fronts, and the best quality that fits `memory_bytes` and
    generates at least `min_tg` tokens per second."""
    speeds = speeds_here(store, machine)
    quality = stored_quality(store, machine=machine)
    metric, chosen, reference = _comparable(quality, set(speeds))
    choice = Choice(metric=metric, reference_model=reference)
    choice.unmatched = sorted({q.file for q in quality} ^ set(speeds))
    for name, q in chosen.items():
        speed = speeds.get(name)
        if speed is None:
            continue
        value = q.kld if metric == "kld" else q.bits_per_byte
        choice.points.append(ChoicePoint(file=name, repo=q.repo, quant=q.quant, quality=float(value or 0.0),
                                         tg=speed.tg, mem_peak=speed.mem_peak, quality_id=q.id,
                                         run_id=speed.run_id))
    speed_front = {p.file for p in pareto_front(choice.points, against="tg")}
    memory_front = {p.file for p in pareto_front(choice.points, against="mem_peak")}
    choice.points = sorted(
        (ChoicePoint(**{**p.__dict__, "on_speed_front": p.file in speed_front,
                        "on_memory_front": p.file in memory_front}) for p in choice.points),
        key=lambda p: (p.quality, -p.tg))
    choice.recommended, choice.recommendation = recommend(choice, memory_bytes=memory_bytes, min_tg=min_tg)
    return choice


def recommend(choice: Choice, *, memory_bytes: int, min_tg: float) -> tuple[ChoicePoint | None, str]:
    """The point and the sentence: best quality among those that fit and are fast enough; what is missing else."""
    if not choice.points:
        return None, ("Nothing to choose from yet: measure the quality (tokenometer quality) and the generation "
                      "speed (tokenometer bench) of the same model files on this machine.")
    fits = [p for p in choice.points if p.mem_peak <= memory_bytes]
    fast = [p for p in fits if p.tg >= min_tg]
    if fast:
        best = min(fast, key=lambda p: (p.quality, -p.tg))
        return best, (f"Best quality that fits in your memory ({fmt_bytes(memory_bytes)}) and reaches at least "
                      f"{min_tg:g} t/s: {best.file} ({choice.metric_label} {best.quality:.4g}, {fmt_rate(best.tg)}, "
                      f"{fmt_bytes(best.mem_peak)} peak).")
    if fits:
        fastest = max(fits, key=lambda p: p.tg)
        return None, (f"None of the {len(choice.points)} models measured here that fit in {fmt_bytes(memory_bytes)} "
                      f"reaches {min_tg:g} t/s; the fastest is {fastest.file} at {fmt_rate(fastest.tg)}.")
    smallest = min(choice.points, key=lambda p: p.mem_peak)
    return None, (f"None of the {len(choice.points)} models measured here fits in {fmt_bytes(memory_bytes)}; the "
                  f"smallest, {smallest.file}, peaked at {fmt_bytes(smallest.mem_peak)}.")


@dataclass(frozen=True)
class MeasuredHere:
    """What this machine measured of one model file: its generation speed and its quality, where known."""

    file: str
    repo: str = ""
    tg: float | None = None
    mem_peak: int | None = None
    kld: float | None = None
    reference_model: str = ""
    bits_per_byte: float | None = None

    def short(self) -> str:
        """'12.3 t/s · KLD 0.0123 measured': speed and quality in a table cell."""
        parts = [fmt_rate(self.tg)] if self.tg else []
        if self.kld is not None:
            parts.append(f"KLD {self.kld:.4f}")
        elif self.bits_per_byte is not None:
            parts.append(f"{self.bits_per_byte:.3f} bits/byte")
        return " · ".join(parts) + " measured" if parts else ""

    def lines(self) -> list[str]:
        out = []
        if self.tg:
            out.append(f"Measured here: generation {fmt_rate(self.tg)}, peak memory {fmt_bytes(self.mem_peak)}")
        if self.kld is not None:
            out.append(f"Mean KL divergence {self.kld:.5f} against {self.reference_model or 'its reference'}")
        if self.bits_per_byte is not None:
            out.append(f"{self.bits_per_byte:.4f} bits per byte of the text")
        return out


def measured_here(store: ResultsStore, *, machine: dict[str, Any]) -> dict[str, MeasuredHere]:
    """Per model file name, the newest speed and quality measured on this machine (a KLD result preferred)."""
    speeds = speeds_here(store, machine)
    quality: dict[str, QualityPoint] = {}
    repos: dict[str, str] = {}
    for q in stored_quality(store, machine=machine):  # newest first
        repos.setdefault(q.file, q.repo)
        if q.file not in quality or (quality[q.file].kld is None and q.kld is not None):
            quality[q.file] = q
    out = {}
    for name in set(speeds) | set(quality):
        s, best = speeds.get(name), quality.get(name)
        out[name] = MeasuredHere(file=name, repo=repos.get(name) or (s.repo if s else ""), tg=s.tg if s else None,
                                 mem_peak=s.mem_peak if s else None, kld=best.kld if best else None,
                                 reference_model=best.reference_model if best else "",
                                 bits_per_byte=best.bits_per_byte if best else None)
    return out
