"""One trust label per result, with its reasons: ok, noisy, throttled, swapped or partial offload."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

LABELS = ("ok", "noisy", "throttled", "swapped", "partial offload")
MAX_SPREAD = 0.05  # stddev over mean
MIN_DRIFT = 0.03  # a steady fall of at least 3% from the first repetition to the last
BUSY_CORES = 0.5  # other processes using half a core or more on average
SWAP_BYTES = 1 << 20
MAJOR_FAULTS = 200  # page reads from disk during the test (the weights being paged back in)
_PRIORITY = ("swapped", "throttled", "partial offload", "noisy")


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    for rank, i in enumerate(order):
        ranks[i] = float(rank)
    return ranks


def drift(samples_ts: Sequence[float]) -> float:
    """The steady change across repetitions as a fraction of the mean (negative: slowing down); 0 unless the
    rates move one way (Spearman's rank correlation with the repetition number beyond +-0.8, 4+ samples)."""
    n = len(samples_ts)
    if n < 4 or statistics.fmean(samples_ts) <= 0:
        return 0.0
    order = list(range(n))
    rho = statistics.correlation(_ranks(samples_ts), [float(i) for i in order]) \
        if len(set(samples_ts)) > 1 else 0.0
    if abs(rho) < 0.8:
        return 0.0
    slope, _ = statistics.linear_regression([float(i) for i in order], list(samples_ts))
    return slope * (n - 1) / statistics.fmean(samples_ts)


def _partial_offload(result: dict[str, Any]) -> bool:
    """All layers were asked for the GPU, yet a real share of the weights stayed in CPU buffers."""
    asked_all = int(result.get("n_gpu_layers", 0)) < 0 or int(result.get("n_gpu_layers", 0)) >= 999
    buffers = result.get("buffers") or {}
    model = {k: int(v) for k, v in buffers.items() if isinstance(k, str) and k.endswith(":model")}
    gpu = sum(v for k, v in model.items() if not k.upper().startswith("CPU"))
    cpu = sum(v for k, v in model.items() if k.upper().startswith("CPU"))
    # The input embedding always stays on the CPU: a tenth of the weights is allowed for it.
    return bool(result.get("gpu_info")) and asked_all and gpu > 0 and cpu > 0.1 * (cpu + gpu)


def assess(result: dict[str, Any], conditions: dict[str, Any]) -> tuple[str, list[str]]:
    """(label, reasons) for one result (BenchResult.to_json()) and its run conditions."""
    found: dict[str, list[str]] = {}
    samples = [float(x) for x in result.get("samples_ts") or []]
    mean = statistics.fmean(samples) if samples else 0.0
    if len(samples) >= 2 and mean > 0:
        spread = statistics.stdev(samples) / mean
        if spread > MAX_SPREAD:
            found.setdefault("noisy", []).append(f"spread {spread:.1%} of the mean (over {MAX_SPREAD:.0%})")
    change = drift(samples)
    if change <= -MIN_DRIFT:
        found.setdefault("throttled", []).append(f"speed fell {-change:.0%} steadily across the repetitions")
    seconds = float(conditions.get("seconds") or 0.0)
    others = conditions.get("others_cpu_s")
    if others is not None and seconds > 0 and others / seconds >= BUSY_CORES:
        found.setdefault("noisy", []).append(f"busy machine: other processes used {others / seconds:.1f} cores")
    swapped = float(conditions.get("swap_in", 0)) + float(conditions.get("swap_out", 0))
    if swapped >= SWAP_BYTES:
        found.setdefault("swapped", []).append(f"{swapped / 2**20:.0f} MiB swapped in and out during the test")
    if float(conditions.get("major_faults", 0)) >= MAJOR_FAULTS:
        found.setdefault("swapped", []).append(f"{int(conditions['major_faults'])} major page faults in the worker "
                                               "(weights read back from disk)")
    if conditions.get("gpu_throttle"):
        found.setdefault("throttled", []).append(f"GPU held back: {conditions['gpu_throttle']}")
    if conditions.get("on_battery"):
        found.setdefault("noisy", []).append("on battery power")
    if _partial_offload(result):
        found.setdefault("partial offload", []).append("all layers were asked for the GPU but part of the "
                                                      "weights stayed on the CPU")
    label = next((name for name in _PRIORITY if name in found), "ok")
    reasons = [reason for name in _PRIORITY for reason in found.get(name, [])]
    return label, reasons
