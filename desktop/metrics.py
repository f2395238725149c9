"""The benchmark result columns: what each figure means, its unit and how it was measured."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtGui import QColor

from desktop.tables import Column
from models.units import fmt_bytes, fmt_count, fmt_ms, fmt_rate
from models.bench.spec import BenchResult
from models.text import plural

log = logging.getLogger(__name__)

TIPS = {
    "model": "The GGUF file benchmarked.",
    "test": "llama-bench's test name: ppN = prompt processing of N tokens, tgN = generating N tokens "
            "one at a time, @ dN = after N tokens already in the context.",
    "avg_ts": "Throughput in tokens per second: the mean of the per-repetition rates (1e9 × tokens / ns), "
              "± the sample standard deviation, as llama-bench reports it.",
    "samples": "Repetitions measured (after one untimed warmup).",
    "load_ms": "Time to load the model file and create the context, in the worker process.",
    "ttft_ms": "Time to first token of a real chat prompt (in the model's chat template), as a user waits for "
               "it: prefill of the whole prompt plus the first sampled token. The mean of the repetitions after "
               "one warmup; only measured when a TTFT prompt is set.",
    "mem_peak": "Peak resident memory of the worker process (VmHWM): private memory plus the "
                "file pages of the mmap'd weights that were touched.",
    "mem_rss_anon": "Private memory of the worker (RssAnon) at the end of the test: KV cache, compute "
                    "buffers and everything not backed by the model file.",
    "mem_rss_file": "File-backed resident memory (RssFile): the model weights mapped with mmap.",
    "buf_kv": "KV cache size as llama.cpp logged it, summed over devices.",
    "model_size": "Size of the model's weights in the file.",
    "n_params": "Number of parameters of the model.",
    "threads": "CPU threads used for generation (n_threads).",
    "ngl": "Layers offloaded to the GPU (n_gpu_layers); 99 = all.",
    "batch": "Logical batch size / physical micro-batch size (n_batch / n_ubatch).",
    "status": "ok, failed (hover for the reason) or cancelled.",
    "when": "When the test ran (local time).",
    "backends": "llama.cpp backends in the worker's build.",
}


SPREAD_LIMIT = 0.05  # a spread above 5 % of the mean says the figure is not settled
MIN_REPETITIONS = 3  # fewer repetitions give no usable standard deviation


def spread_warning(result: BenchResult) -> str:
    """Why a throughput figure should not be trusted yet, in words; "" when it looks settled."""
    if result.status != "ok" or not result.avg_ts:
        return ""
    n = len(result.samples_ts)
    reasons = []
    if n < MIN_REPETITIONS:
        reasons.append(f"only {n} repetition{'s' if n != 1 else ''} (use {MIN_REPETITIONS} or more)")
    if result.stddev_ts > SPREAD_LIMIT * result.avg_ts:
        reasons.append(f"the spread is {result.stddev_ts / result.avg_ts:.0%} of the mean (over "
                       f"{SPREAD_LIMIT:.0%})")
    if not reasons:
        return ""
    return "Not a settled figure: " + " and ".join(reasons) + ". Run more repetitions, with the machine idle."


def rate_text(result: BenchResult) -> str:
    """The throughput as shown in tables: mean ± spread, with a warning sign when it is not settled."""
    text = fmt_rate(result.avg_ts, result.stddev_ts)
    return f"⚠ {text}" if spread_warning(result) else text


def model_where(path: str | Path) -> str:
    """The repo (for a Hugging Face cache path) or the folder a model file is in: what tells same-named files apart."""
    parts = Path(path).parts
    for part in parts:
        if part.startswith("models--"):
            return part.removeprefix("models--").replace("--", "/", 1)
    return Path(path).parent.name if len(parts) > 1 else ""


def model_name(result: BenchResult) -> str:
    # The worker writes the path into model_filename, as llama-bench does; people read the file name.
    return Path(result.model_filename or result.model_path).name


def _status_color(result: BenchResult) -> QColor | None:
    if result.status == "failed":
        return QColor("#d9534f")
    if result.status == "cancelled":
        return QColor("#a0a0a0")
    return None


def _status_tip(result: BenchResult) -> str:
    return result.error or TIPS["status"]


def result_columns(get: Callable[[Any], BenchResult] = lambda row: row, *,
                   with_when: bool = False) -> list[Column[Any]]:
    """Columns over rows that hold a BenchResult (`get` reaches it from the row)."""
    columns: list[Column[Any]] = []
    if with_when:
        columns.append(Column("When", lambda r: get(r).test_time, lambda v: (v or "")[:19].replace("T", " "),
                              tip=TIPS["when"]))
    columns += [
        Column("Model", lambda r: model_name(get(r)), tip=TIPS["model"],
               cell_tip=lambda r: _model_tip(get(r))),
        Column("Test", lambda r: get(r).test, tip=TIPS["test"]),
        Column("Throughput", lambda r: get(r).avg_ts, numeric=True, tip=TIPS["avg_ts"],
               show=lambda r: rate_text(get(r)), cell_tip=lambda r: _samples_tip(get(r)),
               color=lambda r: _rate_color(get(r))),
        Column("Status", lambda r: get(r).status, tip=TIPS["status"], color=lambda r: _status_color(get(r)),
               cell_tip=lambda r: _status_tip(get(r))),
        Column("Reps", lambda r: len(get(r).samples_ts), numeric=True, tip=TIPS["samples"]),
        Column("Load", lambda r: get(r).load_ms, fmt_ms, numeric=True, tip=TIPS["load_ms"]),
        Column("TTFT", lambda r: get(r).ttft_ms, fmt_ms, numeric=True, tip=TIPS["ttft_ms"]),
        Column("Peak memory", lambda r: get(r).mem_peak, fmt_bytes, numeric=True, tip=TIPS["mem_peak"]),
        Column("Private memory", lambda r: get(r).mem_rss_anon, fmt_bytes, numeric=True,
               tip=TIPS["mem_rss_anon"]),
        Column("KV cache", lambda r: get(r).buf_kv, fmt_bytes, numeric=True, tip=TIPS["buf_kv"]),
        Column("Size", lambda r: get(r).model_size, fmt_bytes, numeric=True, tip=TIPS["model_size"]),
        Column("Params", lambda r: get(r).model_n_params, fmt_count, numeric=True, tip=TIPS["n_params"]),
        Column("Threads", lambda r: get(r).n_threads, numeric=True, tip=TIPS["threads"]),
        Column("GPU layers", lambda r: get(r).n_gpu_layers, numeric=True, tip=TIPS["ngl"]),
        Column("Batch", lambda r: get(r).n_batch, numeric=True, tip=TIPS["batch"],
               show=lambda r: f"{get(r).n_batch} / {get(r).n_ubatch}"),
        Column("Trust", lambda r: _trust(get(r)), tip=TIPS_TRUST, cell_tip=lambda r: _trust_tip(get(r)),
               color=lambda r: QColor("#c77c02") if get(r).trust not in ("", "ok") else None),
        Column("95% interval", lambda r: relative_interval(get(r)), numeric=True, tip=TIPS_INTERVAL,
               show=lambda r: interval_text(get(r)), cell_tip=lambda r: _interval_tip(get(r)),
               color=lambda r: QColor("#c77c02") if _missed(get(r)) else None),
    ]
    return columns


TIPS_TRUST = ("How far to trust the figure: ok, noisy (spread over 5%, a busy machine, battery), throttled (a "
              "steady fall across repetitions, GPU throttling), swapped, or partial offload; hover for the reason. "
              "Type a label in the filter to see only those runs.")


TIPS_INTERVAL = ("The 95% confidence interval of the mean throughput (Student t over the repetitions), as a share of "
                 "the mean. With Repetitions auto a test repeats until this is within the target (±2%): ✓ when it "
                 "got there; otherwise the cap (30 repetitions or 60 s of timing) stopped it first.")


def _interval(result: BenchResult) -> float:
    """The half-width in t/s: the worker's, or from the samples for results stored before it kept one."""
    from models.bench.trust.adaptive import ci95

    if result.status != "ok" or len(result.samples_ts) < 2:
        return 0.0
    return result.ci95_ts or ci95(result.samples_ts)


def relative_interval(result: BenchResult) -> float | None:
    """The 95% interval over the mean; None where it cannot be known (one repetition, a failed test)."""
    half = _interval(result)
    return half / result.avg_ts if half and result.avg_ts else None


def _missed(result: BenchResult) -> bool:
    return bool(result.ci_target) and not result.ci_met and result.status == "ok"


def interval_text(result: BenchResult) -> str:
    """"±1.3% ✓" (adaptive, target met), "±3.1% (target ±2%)" (not met), "±1.3%" (fixed repetitions), "–"."""
    share = relative_interval(result)
    if share is None:
        return "–" if result.status == "ok" else ""
    text = f"±{share:.1%}"
    if result.ci_target:
        text += " ✓" if result.ci_met else f" (target ±{result.ci_target:.0%})"
    return text


def _interval_tip(result: BenchResult) -> str:
    half, n = _interval(result), len(result.samples_ts)
    if not half:
        return "One repetition gives no interval: use 2 or more, or auto." if result.status == "ok" else ""
    text = f"{result.avg_ts:.2f} ± {half:.2f} t/s, the 95% interval of the mean over {plural(n, 'repetition')}."
    if result.ci_target:
        text += (f"\nRepeated until within ±{result.ci_target:.0%} (auto): "
                 + ("reached." if result.ci_met else "not reached before the cap (30 repetitions or 60 s)."))
    else:
        text += "\nA fixed number of repetitions (no target)."
    return text


def _trust(result: BenchResult) -> str:
    if result.status != "ok":
        return ""
    return result.trust or "not assessed"


def _trust_tip(result: BenchResult) -> str:
    if result.trust_reasons:
        return result.trust_reasons
    if result.trust == "ok":
        return "Spread within 5%, no drift, no other load, no swapping seen during the test."
    return "Measured before run conditions were recorded." if result.status == "ok" else ""


def _model_tip(result: BenchResult) -> str:
    path = result.model_path or result.model_filename
    where = model_where(path) if path else ""
    return f"{path}\nfrom {where}" if where else (path or model_name(result))


def _rate_color(result: BenchResult) -> QColor | None:
    return QColor("#c77c02") if spread_warning(result) else None


def _samples_tip(result: BenchResult) -> str:
    if not result.samples_ts:
        return TIPS["avg_ts"]
    samples = ", ".join(f"{value:.1f}" for value in result.samples_ts)
    text = (f"{fmt_rate(result.avg_ts, result.stddev_ts)} over {plural(len(result.samples_ts), 'repetition')}: "
            f"{samples} t/s")
    interval = interval_text(result)
    if interval not in ("", "–"):  # the 95% interval column, at the table's end, said where the eye already is
        text += f"\n95% interval of the mean {interval}"
    warning = spread_warning(result)
    return f"{warning}\n{text}" if warning else text
