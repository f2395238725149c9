"""Runs side by side: one row per run (one sitting of a model, machine and settings); per test the mean, spread, n
and change to a baseline; runs of one configuration stay apart, with the spread of their means."""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from models.errors import ReportError
from models.results.store import RunRecord, fingerprint_sha

log = logging.getLogger(__name__)

MIB = 2**20


@dataclass(frozen=True)
class Stat:
    """A figure with its spread (sample standard deviation, n-1, as llama-bench) and sample count."""

    mean: float
    spread: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat | None:
        if not values:
            return None
        return cls(mean=statistics.fmean(values), spread=statistics.stdev(values) if len(values) > 1 else 0.0,
                   n=len(values))


@dataclass(frozen=True)
class Column:
    """One compared figure: a test's throughput (key = the test's name) or a fixed measure."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    kind: str  # "throughput", "ttft", "load", "memory", "energy"


@dataclass
class CompareRow:
    """One machine + model + settings, and its figures."""

    key: str
    model: dict[str, Any]
    model_label: str
    machine_key: str
    machine_label: str
    settings: dict[str, Any]
    run_ids: list[int] = field(default_factory=list)
    job: str = ""  # the sitting: every test of one job (one model load) shares it
    started_at: str = ""  # when the sitting's first test started (ISO, UTC)
    config_key: str = ""  # machine + model + settings: rows with the same one are repeats of a configuration
    repeats: int = 1  # rows of this configuration in the comparison (1: nothing to tell apart)
    tests: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # test -> (n_prompt, n_gen, n_depth)
    disagrees: list[str] = field(default_factory=list)  # tests whose run means disagree with a repeat's
    failed: int = 0  # runs that failed or were cancelled (left out of the figures)
    imported: bool = False
    energy_is_estimate: bool = False  # any of its energy figures came from a watts figure, not a sensor
    cells: dict[str, Stat] = field(default_factory=dict)
    diffs: dict[str, float] = field(default_factory=dict)  # percent change against the baseline row
    is_baseline: bool = False
    # Per test, the first trust label other than "ok" among its runs, and why
    # (models.bench.trust.labels; runs measured before labels existed have none).
    trust: dict[str, str] = field(default_factory=dict)
    trust_notes: dict[str, str] = field(default_factory=dict)
    # Per generation test: the mean t/s as a share of the machine's memory-bandwidth limit, from the prediction
    # stored with each run (BenchResult.speed_estimate; runs without one have none).
    limit_share: dict[str, float] = field(default_factory=dict)
    # Per prompt test: the mean t/s as a share of the machine's compute limit (FLOPs per token over the measured
    # FLOP/s, stored with each run; none where the FLOP/s were not known).
    compute_share: dict[str, float] = field(default_factory=dict)
    # LocalScore's score (models.bench.localscore) where the row holds all of LocalScore's tests at its batch
    # sizes and flash attention off; 0 otherwise. Only comparable with LocalScore's results for the same file.
    localscore: float = 0.0

    @property
    def settings_label(self) -> str:
        return settings_label(self.settings)

    @property
    def sitting(self) -> str:
        """When and which stored runs: "2026-11-25 10:00 UTC · runs 12-14", to tell repeats apart."""
        when = self.started_at[:16].replace("T", " ") + " UTC" if self.started_at else "unknown time"
        return f"{when} · {_ids_text(self.run_ids)}"


@dataclass(frozen=True)
class RepeatSpread:
    """One test of a configuration run in several sittings: each run's mean and spread, and the spread of the
    run means (n = runs). `disagree`: two runs differ by more than twice their combined rep-to-rep spread."""

    config_key: str
    label: str  # model · machine · settings
    test: str
    run_ids: list[list[int]]  # per run (row), its stored run ids
    runs: list[Stat]  # per run: mean ± sd over its repetitions
    between: Stat  # mean ± sd of the run means, n = number of runs
    disagree: bool
    judged: bool  # False when a run has a single repetition, so its own spread is unknown

    def text(self, *, unit: str = "t/s") -> str:
        each = ", ".join(f"{r.mean:.2f} ± {r.spread:.2f}" for r in self.runs)
        line = (f"{self.label}: {self.test} over {self.between.n} runs: run means {self.between.mean:.2f} ± "
                f"{self.between.spread:.2f} {unit} (spread of the run means; each run: {each})")
        if self.disagree:
            line += " -- WARNING: the runs disagree beyond their own spreads; something differed between sittings"
        elif not self.judged:
            line += " (a run with one repetition: agreement not judged)"
        return line


@dataclass
class Comparison:
    """The table: columns, rows, which row is the baseline (if one was chosen), and for configurations run more
    than once, the spread of their run means."""

    columns: list[Column]
    rows: list[CompareRow]
    baseline_key: str | None = None
    repeats: list[RepeatSpread] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """One line per test where repeated runs of one configuration disagree beyond their own spreads."""
        return [spread.text() for spread in self.repeats if spread.disagree]

    def to_json(self) -> dict[str, Any]:
        return {"columns": [asdict(c) for c in self.columns], "baseline": self.baseline_key,
                "rows": [{**asdict(r), "settings_label": r.settings_label, "sitting": r.sitting} for r in self.rows],
                "repeats": [asdict(s) for s in self.repeats], "warnings": self.warnings}


def _ids_text(ids: Sequence[int]) -> str:
    ordered = sorted(ids)
    if not ordered:
        return "no runs"
    if len(ordered) == 1:
        return f"run {ordered[0]}"
    if ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"runs {ordered[0]}-{ordered[-1]}"
    return "runs " + ",".join(map(str, ordered))


def settings_label(settings: dict[str, Any]) -> str:
    """Short settings text in llama-bench's option words."""
    same = settings["type_k"] == settings["type_v"]
    kv = settings["type_k"] if same else f"{settings['type_k']}/{settings['type_v']}"
    text = (f"threads {settings['n_threads']} · ngl {settings['n_gpu_layers']} · batch {settings['n_batch']}/"
            f"{settings['n_ubatch']} · fa {settings['flash_attn']} · kv {kv}")
    return text if settings.get("use_mmap", True) else text + " · no mmap"


def model_label(model: dict[str, Any]) -> str:
    """The model as people name it: its file, with the repo where known."""
    return f"{model['repo']}/{model['file']}" if model.get("repo") else str(model.get("file") or "unknown model")


def _test_order(rec: RunRecord) -> tuple[int, int, int, int]:
    r = rec.result
    kind_rank = 0 if r.n_gen == 0 else 1 if r.n_prompt == 0 else 2
    return (r.n_depth, kind_rank, r.n_prompt, r.n_gen)


_FIXED = (
    Column("ttft_ms", "TTFT", "ms", False, "ttft"),
    Column("load_ms", "load", "ms", False, "load"),
    Column("mem_peak_mib", "peak memory", "MiB", False, "memory"),
    Column("mem_anon_mib", "private memory", "MiB", False, "memory"),
)


def energy_key(test: str) -> str:
    """The cell key of a test's energy per token: each test's energy stays with that test."""
    return f"energy {test}"


def compare_runs(runs: Sequence[RunRecord], *, baseline: int | None = None) -> Comparison:
    """One row per sitting (job) of a machine, model and settings; with `baseline` (a run id), add each row's
    change against the baseline run's row in percent (positive = larger number, whatever the column's better
    direction). Sittings of the same configuration are never pooled: each is its own row, and `repeats` gives
    the spread of their means, marked where they disagree."""
    rows: dict[str, CompareRow] = {}
    grouped: dict[str, list[RunRecord]] = {}
    for rec in runs:
        model_key = rec.model.get("sha256") or f"{rec.model.get('file')}:{rec.model.get('size')}"
        config = fingerprint_sha({"machine": rec.machine_key, "model": model_key, "settings": rec.settings})[:16]
        # A run stored without a job id (older stores) cannot be matched to its sitting: it stands alone.
        key = fingerprint_sha({"config": config, "job": rec.job or f"run{rec.uid or rec.id}"})[:16]
        if key not in rows:
            rows[key] = CompareRow(key=key, model=rec.model, model_label=model_label(rec.model),
                                   machine_key=rec.machine_key, machine_label=rec.machine_label,
                                   settings=rec.settings, imported=bool(rec.imported_from), job=rec.job,
                                   started_at=rec.started_at, config_key=config)
            grouped[key] = []
        row = rows[key]
        row.run_ids.append(rec.id)
        row.started_at = min(row.started_at, rec.started_at) if row.started_at else rec.started_at
        grouped[key].append(rec)
    ok_runs = sorted((r for r in runs if r.status == "ok"), key=_test_order)
    test_columns: list[Column] = []
    for rec in ok_runs:
        if rec.result.test not in {c.key for c in test_columns}:
            test_columns.append(Column(rec.result.test, rec.result.test, "t/s", True, "throughput"))
    for key, row in rows.items():
        _fill(row, grouped[key])
    ordered = sorted(rows.values(), key=lambda r: (r.config_key, r.started_at))
    # Keep the caller's order of configurations; within one, its sittings oldest first.
    first_seen = {r.config_key: i for i, r in reversed(list(enumerate(rows.values())))}
    ordered.sort(key=lambda r: first_seen[r.config_key])
    energy_columns = [Column(energy_key(c.key), f"energy, {c.key}", "J/token", False, "energy")
                      for c in test_columns]
    used_fixed = [c for c in (*_FIXED, *energy_columns) if any(c.key in row.cells for row in ordered)]
    comparison = Comparison(columns=test_columns + used_fixed, rows=ordered)
    comparison.repeats = _repeats(ordered, test_columns)
    if baseline is not None:
        base = next((row for row in comparison.rows if baseline in row.run_ids), None)
        if base is None:
            raise ReportError(f"The baseline run {baseline} is not among the compared runs.")
        base.is_baseline = True
        comparison.baseline_key = base.key
        for row in comparison.rows:
            for col_key, stat in row.cells.items():
                ref = base.cells.get(col_key)
                if ref is not None and ref.mean:
                    row.diffs[col_key] = (stat.mean - ref.mean) / ref.mean * 100.0
    return comparison


def _repeats(rows: Sequence[CompareRow], tests: Sequence[Column]) -> list[RepeatSpread]:
    by_config: dict[str, list[CompareRow]] = {}
    for row in rows:
        by_config.setdefault(row.config_key, []).append(row)
    spreads: list[RepeatSpread] = []
    for group in by_config.values():
        for row in group:
            row.repeats = len(group)
        if len(group) < 2:
            continue
        head = group[0]
        label = f"{head.model_label} · {head.machine_label} · {head.settings_label}"
        for col in tests:
            having = [r for r in group if col.key in r.cells]
            if len(having) < 2:
                continue
            stats = [r.cells[col.key] for r in having]
            judged = all(s.n > 1 for s in stats)
            # Two sittings of one configuration should differ by about their rep-to-rep noise; beyond twice
            # the combined spread, something else changed (load, thermals, power plan, a driver).
            clash = {i for i, a in enumerate(stats) for j, b in enumerate(stats)
                     if i != j and abs(a.mean - b.mean) > 2 * math.hypot(a.spread, b.spread)} if judged else set()
            for i in clash:
                having[i].disagrees.append(col.key)
            between = Stat.of([s.mean for s in stats])
            assert between is not None
            spreads.append(RepeatSpread(config_key=head.config_key, label=label, test=col.key,
                                        run_ids=[list(r.run_ids) for r in having], runs=stats, between=between,
                                        disagree=bool(clash), judged=judged))
    return spreads


def _fill(row: CompareRow, records: list[RunRecord]) -> None:
    ok = [r for r in records if r.status == "ok"]
    row.failed = len(records) - len(ok)
    samples: dict[str, list[float]] = {}
    for rec in ok:
        samples.setdefault(rec.result.test, []).extend(rec.result.samples_ts)
        row.tests[rec.result.test] = (rec.result.n_prompt, rec.result.n_gen, rec.result.n_depth)
        share = (getattr(rec.result, "speed_estimate", None) or {}).get("share_of_limit")
        if share:
            row.limit_share.setdefault(rec.result.test, share)
        share = (getattr(rec.result, "speed_estimate", None) or {}).get("share_of_compute_limit")
        if share:
            row.compute_share.setdefault(rec.result.test, share)
        label = getattr(rec.result, "trust", "")
        if label and label != "ok" and rec.result.test not in row.trust:
            row.trust[rec.result.test] = label
            row.trust_notes[rec.result.test] = getattr(rec.result, "trust_reasons", "")
    # Load time, TTFT and peak memory belong to a job (one model load), which every test result repeats.
    per_job: dict[str, RunRecord] = {}
    peak: dict[str, int] = {}
    anon: dict[str, int] = {}
    for rec in ok:
        job = rec.job or f"run{rec.id}"
        per_job.setdefault(job, rec)
        peak[job] = max(peak.get(job, 0), rec.result.mem_peak)
        anon[job] = max(anon.get(job, 0), rec.result.mem_rss_anon)
    measures: dict[str, list[float]] = {
        "ttft_ms": [t for r in per_job.values()
                    for t in (getattr(r.result, "ttft_samples_ms", None) or [r.result.ttft_ms]) if t > 0],
        "load_ms": [r.result.load_ms for r in per_job.values() if r.result.load_ms > 0],
        "mem_peak_mib": [v / MIB for v in peak.values() if v > 0],
        "mem_anon_mib": [v / MIB for v in anon.values() if v > 0],
    }
    for rec in ok:
        per_token = rec.energy.joules_per_token(rec.result) if rec.energy else None
        if per_token is not None:
            row.energy_is_estimate = row.energy_is_estimate or bool(rec.energy and rec.energy.is_estimate)
            # Keyed by the test it was metered over, so a rate is only ever paired with its own energy.
            measures.setdefault(energy_key(rec.result.test), []).append(per_token)
    for key, values in [*samples.items(), *measures.items()]:
        stat = Stat.of(values)
        if stat is not None:
            row.cells[key] = stat
    row.localscore = _localscore(row, ok)


def _localscore(row: CompareRow, ok: Sequence[RunRecord]) -> float:
    """LocalScore's score for a sitting that ran its preset (its tests, batch sizes, flash attention off), else 0:
    the same tests at other settings are not what LocalScore measures."""
    from models.bench.localscore import LOCALSCORE_BATCH, LOCALSCORE_UBATCH, localscore

    s = row.settings
    if (s.get("n_batch"), s.get("n_ubatch")) != (LOCALSCORE_BATCH, LOCALSCORE_UBATCH) \
            or str(s.get("flash_attn")).lower() not in ("off", "0", "false"):
        return 0.0
    score = localscore(rec.result for rec in ok)
    return score.score if score.complete else 0.0


def format_stat(stat: Stat | None, *, digits: int = 2) -> str:
    """"123.45 ± 1.20 (n=5)", or "–" for no figure."""
    if stat is None:
        return "–"
    return f"{stat.mean:.{digits}f} ± {stat.spread:.{digits}f} (n={stat.n})"


def format_comparison(comparison: Comparison) -> str:
    """The comparison as a Markdown table (for the terminal and Markdown reports), then the spread of the run
    means of each configuration run more than once, with a warning where those runs disagree."""
    head = ["model", "machine", "settings", "run"] + [f"{c.label} [{c.unit}]" for c in comparison.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * len(comparison.columns)) + "|"]
    for row in comparison.rows:
        cells = [row.model_label + (" (baseline)" if row.is_baseline else ""),
                 row.machine_label + (" (imported)" if row.imported else ""), row.settings_label,
                 row.sitting + (" (runs disagree)" if row.disagrees else "")]
        for col in comparison.columns:
            # J/token is a small number: two decimals would round most of it away.
            text = format_stat(row.cells.get(col.key), digits=4 if col.kind == "energy" else 2)
            if col.key in row.diffs and not row.is_baseline:
                text += f" {row.diffs[col.key]:+.1f}%"
            if col.key in row.trust:
                text += f" [{row.trust[col.key]}]"
            cells.append(text)
        if row.failed:
            cells[0] += f" ({row.failed} failed)"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if comparison.repeats:
        lines += ["", "Configurations run more than once (each run is its own row above; never pooled):"]
        lines += [f"- {spread.text()}" for spread in comparison.repeats]
    shares = [(row, test, share) for row in comparison.rows for test, share in row.limit_share.items()]
    if shares:
        lines += ["", "Generation against the machine's memory-bandwidth limit (bytes read per token over the "
                  "measured bandwidth):"]
        lines += [f"- {row.model_label} · {row.settings_label} · {test}: at {share:.0%} of the limit"
                  for row, test, share in shares]
    shares = [(row, test, share) for row in comparison.rows for test, share in row.compute_share.items()]
    if shares:
        lines += ["", "Prompt processing against the machine's compute limit (FLOPs per token over the measured "
                  "FLOP/s: the CPU's float32 GEMM, a GPU's FP16 data-sheet peak):"]
        lines += [f"- {row.model_label} · {row.settings_label} · {test}: at {share:.0%} of the limit"
                  for row, test, share in shares]
    scored = [row for row in comparison.rows if row.localscore]
    if scored:
        lines += ["", "LocalScore (localscore.ai's score; compare only with its results for the same model file):"]
        lines += [f"- {row.model_label} · {row.settings_label}: {row.localscore:.0f}" for row in scored]
    flagged = [(row, test) for row in comparison.rows for test in row.trust]
    if flagged:
        lines += ["", "Figures to trust less ([label] in the table):"]
        lines += [f"- {row.model_label} · {row.settings_label} · {test}: {row.trust[test]}"
                  + (f" ({row.trust_notes[test]})" if row.trust_notes.get(test) else "") for row, test in flagged]
    return "\n".join(lines) + "\n"
