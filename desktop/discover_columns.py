"""Discover's two tables: the repos found, and a repo's files with the fit badge, the speed here and their tooltips."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtGui import QColor

from desktop.remote_devices import POOL_COLORS, pool_tip
from desktop.tables import Column
from models.hub.repos import QuantModel, RepoSummary
from models.text import plural
from models.units import fmt_bytes, fmt_count

BADGES = {"gpu": ("fully on GPU", "#2e7d32"), "partial": ("partial offload", "#b26a00"),
          "cpu": ("CPU only", "#1565c0"), "no_fit": ("won't fit", "#c62828")}


@dataclass
class FileRow:
    """One downloadable model of the selected repo, with the fit verdict once it is known."""

    model: QuantModel
    verdict: Any = None  # models.fit.estimate.FitVerdict
    fit_error: str = ""
    speed: Any = None  # models.fit.speed.SpeedPrediction at the suggested offload
    local: Path | None = None  # the file already on this machine (Library), if it is
    measured: Any = None  # models.results.choice.MeasuredHere: speed and quality measured on this machine
    pool: Any = None  # models.machine.rpc_known.PoolFit: across this PC and the remote devices, when they are set
    pool_note: str = ""  # why remote devices that are set were not counted


REPO_COLUMNS: list[Column[RepoSummary]] = [
    Column("Repo", lambda r: r.repo_id + ("  🔒" if r.gated else ""),
           cell_tip=lambda r: f"{r.repo_id}\nlicence: {r.license or 'unknown'}"
                              + ("\ngated: accept the terms on the Hub and save a token in Settings" if r.gated else "")),
    Column("Architecture", lambda r: r.architecture or "", tip="From the Hub's GGUF metadata."),
    Column("Params", lambda r: r.n_params, fmt_count, numeric=True, tip="Parameters, from the Hub's GGUF metadata."),
    Column("Downloads", lambda r: r.downloads, fmt_count, numeric=True, tip="Downloads in the last 30 days."),
    Column("Likes", lambda r: r.likes, fmt_count, numeric=True),
    Column("Updated", lambda r: r.last_modified.isoformat() if r.last_modified else "",
           lambda v: v[:10], tip="Last change to the repo."),
]


def badge(row: FileRow) -> str:
    if row.model.kind != "model":
        return "projector"
    if row.fit_error:
        return "unknown"
    if row.pool is not None:
        return str(row.pool.badge)
    return BADGES[row.verdict.verdict][0] if row.verdict is not None else "…"


def _badge_color(row: FileRow) -> QColor | None:
    if row.pool is not None:
        return QColor(POOL_COLORS[row.pool.verdict])  # with remote devices set, the badge is the pool's
    return QColor(BADGES[row.verdict.verdict][1]) if row.verdict is not None else None


def _speed(row: FileRow) -> str:
    """"≈ 35 t/s here" beside the fit badge: generation speed predicted at the suggested offload; for a quant
    measured here, its measured speed and quality instead ("12.3 t/s · KLD 0.0123 measured")."""
    if row.measured is not None and row.measured.short():
        return str(row.measured.short())
    if row.speed is None or row.verdict is None or row.verdict.verdict == "no_fit":
        return ""
    return row.speed.short()


def _fit_tip(row: FileRow) -> str:
    if row.fit_error:
        return f"Could not estimate: {row.fit_error}"
    v = row.verdict
    if v is None:
        return "Reading the file's header from the Hub to estimate its memory …"
    e = v.estimate
    lines = pool_tip(row.pool) if row.pool is not None else [row.pool_note, ""] if row.pool_note else []
    lines += [v.summary, "", f"Weights {fmt_bytes(e.weights)} · KV cache {fmt_bytes(e.kv)} · compute "
              f"{fmt_bytes(e.compute)} · output {fmt_bytes(e.output)} = {fmt_bytes(e.total)}",
              f"Suggested GPU layers: {v.n_gpu_layers}; RAM left {fmt_bytes(v.headroom_ram)}"
              + (f", VRAM left {fmt_bytes(v.headroom_vram)}" if v.headroom_vram else "")]
    if row.speed is not None and v.verdict != "no_fit":
        s = row.speed
        lines += ["", f"Generation (tg128) {s.text()}"
                  + (f"; bandwidth limit {s.tg_ceiling:.1f} t/s, learned from "
                     f"{plural(s.n_models, 'model')} measured here" if s.tg_ceiling else "")] + s.notes[:2]
    return "\n".join(lines + v.notes[:4])


def _speed_tip(row: FileRow) -> str:
    if row.measured is None:
        return _fit_tip(row)
    return "\n".join([*row.measured.lines(), "", _fit_tip(row)])


FILE_COLUMNS: list[Column[FileRow]] = [
    Column("Quant", lambda f: f.model.quant, tip="Quantization: fewer bits per weight = smaller and faster, "
                                                 "at some loss of quality."),
    Column("File", lambda f: f.model.name
           + (f"  (+{plural(len(f.model.files) - 1, 'shard')})" if f.model.is_split else "")),
    Column("Size", lambda f: f.model.total_size, fmt_bytes, numeric=True, tip="Download size (all shards)."),
    Column("Fit here", badge, cell_tip=_fit_tip,
           color=_badge_color,
           tip="Whether it runs on this machine at 4096 tokens of context, estimated from the GGUF header "
               "(read from the Hub without downloading) and the detected RAM and VRAM; with remote devices set "
               "(Settings), across this PC and them, from their memory as last checked. Hover for the numbers."),
    Column("Speed here", _speed, cell_tip=_speed_tip,
           tip="Generation speed predicted for this machine: the bytes each token reads (weights, only the "
               "active experts of MoE models, the KV cache) over the measured memory bandwidth, corrected by "
               "what models measured here reached. Hover for the range. A quant already measured here (Benchmark, "
               "Quality) shows its measured speed and quality instead."),
    Column("Checksum", lambda f: "sha256" if f.model.verifiable else "size only",
           tip="sha256: the download is verified against the Hub's LFS hash; size only: the Hub (or mirror) "
               "gave no hash, so only the size can be checked."),
    Column("On disk", lambda f: "✓ on disk" if f.local else "", cell_tip=lambda f: str(f.local or ""),
           color=lambda f: QColor("#2e7d32") if f.local else None,
           tip="Already on this machine (in the Library): no need to download it again."),
]
