"""Quality runs in the results store: what a quality measurement keeps (text, reference) and how it reads back."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import BenchmarkError
from models.results.measurements import Measurement, list_measurements
from models.results.store import ResultsStore, fingerprint_sha

log = logging.getLogger(__name__)


def text_identity(spec: str) -> dict[str, Any]:
    """The text's name and the sha256 of its bytes ("" where it cannot be read, e.g. WikiText-2 not yet fetched)."""
    from models.bench.quality.plan import WIKITEXT2

    name = spec if spec == WIKITEXT2 else Path(spec).name
    try:
        if spec == WIKITEXT2:
            from models.bench.quality.job import wikitext2_path

            path = wikitext2_path(download=False)
        else:
            path = Path(spec)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except (OSError, BenchmarkError):
        digest = ""
    return {"name": name, "sha256": digest}


def reference_identity(path: Path | str) -> dict[str, Any]:
    """A reference file's identity: the model that made it, its text's tokens and chunking. Two runs with the
    same `key` were compared against the same log-probabilities, so their KL divergences rank together."""
    from models.bench.quality.reference import read_reference

    info = read_reference(Path(path))
    model = Path(str(info.meta.get("model_filename") or info.meta.get("model") or "")).name
    ident = {"file": Path(path).name, "model": model, "token_sha256": info.token_sha256, "n_ctx": info.n_ctx,
             "n_chunk": info.n_chunk, "n_vocab": info.n_vocab}
    ident["key"] = f"{model}|{info.token_sha256}|{info.n_ctx}"
    return ident


@dataclass(frozen=True)
class QualityPoint:
    """One stored quality measurement, flattened for ranking."""

    id: int
    file: str  # the model file's name
    repo: str
    quant: str
    bits_per_byte: float
    ppl: float
    n_ctx: int
    text_key: str  # the text's sha256 (or name) and chunk size: bits per byte compare within one
    kld: float | None = None  # mean KLD against the reference; 0 for the reference model itself
    reference_key: str = ""  # reference_identity()["key"], "" without a reference
    reference_model: str = ""
    started_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def quality_point(m: Measurement) -> QualityPoint | None:
    """A measurement's figures, or None when it holds no finished result."""
    data, settings = m.data, m.settings
    if m.status != "ok" or "bits_per_byte" not in data or not m.model.get("file"):
        return None
    text: dict[str, Any] = settings["text"] if isinstance(settings.get("text"), dict) else {}
    n_ctx = int(data.get("n_ctx") or 0)
    text_key = f"{text.get('sha256') or data.get('text', '')}|{n_ctx}"
    ref: dict[str, Any] = settings["reference"] if isinstance(settings.get("reference"), dict) else {}
    kld = None
    if isinstance(data.get("kld"), dict) and data["kld"].get("kld_mean") is not None:
        kld = float(data["kld"]["kld_mean"])
    elif ref and settings.get("role") == "reference":
        kld = 0.0  # the reference against itself
    return QualityPoint(id=m.id, file=m.model["file"], repo=m.model.get("repo", ""), quant=m.model.get("quant", ""),
                        bits_per_byte=float(data["bits_per_byte"]), ppl=float(data.get("ppl") or 0.0), n_ctx=n_ctx,
                        text_key=text_key, kld=kld, reference_key=str(ref.get("key", "")),
                        reference_model=str(ref.get("model", "")), started_at=m.started_at)


def stored_quality(store: ResultsStore, *, machine: dict[str, Any] | None = None) -> list[QualityPoint]:
    """The quality measurements kept (on this machine when `machine` is given), newest first."""
    key = fingerprint_sha(machine) if machine is not None else None
    points = []
    for m in list_measurements(store, kind="quality"):
        if key is not None and fingerprint_sha(m.machine) != key:
            continue
        point = quality_point(m)
        if point is not None:
            points.append(point)
    return points


def quality_answer(m: Measurement) -> str:
    """The one-line answer kept with a quality measurement."""
    data = m.data
    if "ppl" not in data:
        return ""
    line = f"PPL {data['ppl']:.4f} ± {data.get('ppl_err', 0):.4f}, {data.get('bits_per_byte', 0):.4f} bits/byte"
    if isinstance(data.get("kld"), dict):
        ref = m.settings.get("reference") or {}
        line += f", mean KLD {data['kld'].get('kld_mean', 0):.5f} against {ref.get('model') or 'the reference'}"
    return line


def open_quality_recorder(job: Any) -> Any:
    """A MeasurementRecorder (kind quality) for one quality job: its plan, worker settings, the text's identity
    and, once the file exists, the reference's (read when the result is saved, as the reference job writes it)."""
    from models.results.measurements import open_measurement_recorder

    plan = job.quality
    # The plan's reference path is kept as reference_file; "reference" holds the reference's identity.
    planned = plan.to_json()
    planned["reference_file"] = planned.pop("reference")
    settings: dict[str, Any] = {**planned, **{k: getattr(job.params, k) for k in (
        "n_threads", "n_gpu_layers", "n_batch", "n_ubatch", "flash_attn", "type_k", "type_v")},
        "text": text_identity(plan.text), "role": "reference" if plan.save_reference else "candidate"}

    def finish(m: Measurement) -> str:
        ref = plan.reference or str(m.data.get("reference") or plan.save_reference)
        if ref and Path(ref).is_file():
            try:
                m.settings["reference"] = reference_identity(ref)
            except BenchmarkError as error:  # a reference file gone bad since: the result stays, unranked by KLD
                log.warning("The reference %s could not be read: %s", ref, error)
        if not m.settings["text"].get("sha256"):
            m.settings["text"] = text_identity(plan.text)  # WikiText-2 is on disk once the worker fetched it
        return quality_answer(m)

    return open_measurement_recorder(kind="quality", target="llama.cpp", settings=settings,
                                     model_path=job.model_path, answer=finish, meter_energy=False)


def quality_jobs(model: Path, *, reference: Path | None = None, text: str, n_ctx: int = 512, n_chunks: int = 0,
                 n_threads: int | None = None) -> list[Any]:
    """The bench jobs of one quality run, as `tokenometer quality MODEL --ref REFERENCE` makes them: the reference
    model's log-probabilities first (unless kept from an earlier run on the same text and chunking), then MODEL
    against them."""
    from models.bench.quality.plan import QualityPlan
    from models.bench.spec import BenchJob, BenchParams, BenchSweep
    from models.bench.quality.plan import reference_cache

    defaults = BenchSweep(models=[model])
    params = BenchParams(n_threads=n_threads or defaults.n_threads[0], n_gpu_layers=defaults.n_gpu_layers[0])

    def job(path: Path, plan: QualityPlan) -> Any:
        return BenchJob(model_path=path, params=params, tests=(), repetitions=1, quality=plan)

    jobs = []
    ref_file = ""
    if reference is not None:
        cached = reference_cache(reference, text, n_ctx=n_ctx, n_chunks=n_chunks)
        if not cached.exists():
            jobs.append(job(reference, QualityPlan(text=text, n_ctx=n_ctx, n_chunks=n_chunks,
                                                   save_reference=str(cached))))
        ref_file = str(cached)
    jobs.append(job(model, QualityPlan(text=text, n_ctx=n_ctx, n_chunks=n_chunks, reference=ref_file)))
    return jobs
