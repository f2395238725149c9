"""Generation and prompt speed predicted from a GGUF header, this machine's memory bandwidth and its past results.

Generating one token reads every weight it multiplies by once (only the active experts of a mixture-of-experts
model) and the KV cache up to the current position, so memory bandwidth / bytes read is a ceiling on t/s.
Measured speed = ceiling x efficiency minus a per-layer overhead (graph, threads, kernel launches); both are
learned per machine from the results store, so the prediction improves as the user measures.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.fit.flops import prompt_flops_per_token
from models.fit.traffic import TokenTraffic, bandwidth_share, token_traffic, traffic_for_result
from models.gguf.reader import GGUFHeader

if TYPE_CHECKING:
    from models.bench.spec import BenchResult
    from models.machine.bandwidth import MachineBandwidth
    from models.results.store import RunRecord

log = logging.getLogger(__name__)

__all__ = ["Correction", "SpeedPrediction", "SpeedSample", "TokenTraffic", "bandwidth_share", "fit_correction",
           "history_samples", "predict_speed", "token_traffic", "traffic_for_result"]

# Priors before any result on this machine, fitted on a 16-core Xeon (benchmarks/predict_check.py): llama.cpp
# reads the weights of a model far larger than the caches about 1/3 faster than our threaded read test
# measures, the arithmetic coming on top; a GPU reaches about 4/5 of its data-sheet peak; a model that the
# last-level cache largely holds is read faster still ("cpu-cache"). Each layer costs some fixed time per token.
_PRIOR_A = {"cpu": 0.75, "cpu-cache": 1 / 1.4, "gpu": 1 / 0.8, "partial": 1 / 0.8}
_PRIOR_LAYER_S = {"cpu": 20e-6, "cpu-cache": 20e-6, "gpu": 8e-6, "partial": 20e-6}
# Arithmetic per active parameter and token, in core-seconds: 5.3 ms per 1.1 B parameters on 16 Xeon cores.
_PRIOR_PARAM_S = {"cpu": 85e-12, "cpu-cache": 85e-12, "gpu": 1e-15, "partial": 85e-12 / 8}
_PRIOR_WEIGHT = 0.01  # how strongly the priors hold against the history (in squared relative error)
_PRIOR_SPREAD = 0.40  # the relative uncertainty with no history at all
# Per-core matmul throughput for prompt processing with no history, by the widest SIMD the CPU has.
_CORE_FLOPS = (("AVX512", 80e9), ("AVX2", 40e9), ("NEON", 25e9))


@dataclass(frozen=True)
class SpeedSample:
    """One measured generation speed beside the time its bytes take at full bandwidth."""

    model: str
    kind: str  # TokenTraffic.kind
    seconds_at_bandwidth: float
    n_layer: int
    measured_ts: float
    n_threads: int = 0
    params: int = 0  # active parameters multiplied per token


@dataclass
class Correction:
    """seconds per token = a x seconds at full bandwidth + layer_s x layers + param_s x active parameters,
    fitted to one machine's history: reading, a fixed cost per layer, and the arithmetic (dequantizing and
    multiplying: a 4-bit model is cheaper to read than an f16 one but not cheaper to multiply)."""

    kind: str
    a: float
    layer_s: float
    spread: float  # relative uncertainty of a prediction (1 sigma)
    n_samples: int = 0
    n_models: int = 0
    param_s: float = 0.0

    def seconds(self, seconds_at_bandwidth: float, n_layer: int, params: int = 0) -> float:
        return self.a * seconds_at_bandwidth + self.layer_s * n_layer + self.param_s * params


def _features(s: SpeedSample) -> list[float]:
    return [s.seconds_at_bandwidth, float(s.n_layer), float(s.params)]


def _solve(samples: list[SpeedSample], prior: list[float]) -> list[float]:
    """Least squares in relative error, pulled toward the priors (so one or two models give a sane answer);
    a coefficient that comes out negative is held at 0 and the others refitted."""
    import numpy as np

    free = [True] * len(prior)
    for _ in range(len(prior)):
        idx = [j for j, f in enumerate(free) if f]
        p0 = np.array([prior[j] for j in idx])
        # Rows x/t -> 1 for the samples, sqrt(w)/p0_j -> sqrt(w) for the priors (normal equations below).
        rows = np.array([[_features(s)[j] * s.measured_ts for j in idx] for s in samples]).reshape(-1, len(idx))
        lhs = rows.T @ rows + _PRIOR_WEIGHT * np.diag(1.0 / p0**2)
        rhs = rows.sum(axis=0) + _PRIOR_WEIGHT / p0
        theta = np.linalg.solve(lhs, rhs)
        out = [0.0] * len(prior)
        for j, value in zip(idx, theta):
            out[j] = float(value)
        negative = [j for j in idx if out[j] < 0]
        if not negative:
            break
        for j in negative:
            free[j] = False
        if not any(free):
            break
    out[0] = max(out[0], 1e-3)
    return [max(v, 0.0) for v in out]


def _prior(kind: str, threads: int) -> list[float]:
    per_param = _PRIOR_PARAM_S.get(kind, 0.0)
    if kind.startswith("cpu"):
        per_param /= max(threads, 1)  # the arithmetic is shared by the threads
    return [_PRIOR_A[kind], _PRIOR_LAYER_S[kind], max(per_param, 1e-16)]


def fit_correction(samples: Iterable[SpeedSample], *, kind: str, threads: int = 0) -> Correction:
    """The correction for one kind of placement, with its uncertainty from leave-one-model-out errors."""
    mine = [s for s in samples if s.kind == kind and s.measured_ts > 0 and s.seconds_at_bandwidth > 0]
    prior = _prior(kind, threads)
    models = sorted({s.model for s in mine})
    a, c, d = _solve(mine, prior)
    errors = []
    if len(models) >= 2:
        for model in models:
            ra, rc, rd = _solve([s for s in mine if s.model != model], prior)
            for s in mine:
                if s.model == model:
                    predicted = 1.0 / (ra * s.seconds_at_bandwidth + rc * s.n_layer + rd * s.params)
                    errors.append(predicted / s.measured_ts - 1.0)
    # With few models the leave-one-out errors are themselves uncertain: blend in the prior spread.
    rms = math.sqrt(statistics.fmean(e * e for e in errors)) if errors else 0.0
    spread = math.sqrt(rms**2 + (_PRIOR_SPREAD / (1 + len(models))) ** 2)
    return Correction(kind=kind, a=a, layer_s=c, spread=spread, n_samples=len(mine), n_models=len(models),
                      param_s=d)


def history_samples(records: Iterable[RunRecord], bandwidth: MachineBandwidth, *, machine_id: str = "",
                    cache_bytes: int = 0) -> list[SpeedSample]:
    """Generation results of this machine (`machine_id`, else every record) as samples for fit_correction."""
    headers: dict[str, Any] = {}
    out: list[SpeedSample] = []
    for record in records:
        r = record.result
        if machine_id and record.machine.get("machine_id") != machine_id:
            continue
        if r.status != "ok" or r.n_gen <= 0 or r.n_prompt > 0 or r.avg_ts <= 0:
            continue
        key = r.model_path or r.model_filename
        if key not in headers:
            headers[key] = _header_or_none(r.model_path)
        traffic = traffic_for_result(r, header=headers[key])
        seconds = traffic.seconds_at(bandwidth)
        if seconds:
            out.append(SpeedSample(model=r.model_sha256 or Path(key).name, kind=traffic.regime(cache_bytes),
                                   seconds_at_bandwidth=seconds, n_layer=traffic.n_layer or 1,
                                   measured_ts=r.avg_ts, n_threads=r.n_threads, params=traffic.active_params))
    return out


def _header_or_none(path: str) -> GGUFHeader | None:
    if not path or not Path(path).is_file():
        return None
    try:
        from models.gguf.split import read_model_header

        return read_model_header(Path(path))
    except Exception as error:  # noqa: BLE001 - an unreadable old file only costs its sample's precision
        log.debug("header of %s not readable: %s", path, error)
        return None


@dataclass
class SpeedPrediction:
    """Predicted t/s with a one-sigma range; 0 where it cannot be predicted (`notes` says why)."""

    tg: float = 0.0
    tg_low: float = 0.0
    tg_high: float = 0.0
    tg_ceiling: float = 0.0  # the bandwidth limit
    pp: float = 0.0
    pp_low: float = 0.0
    pp_high: float = 0.0
    pp_ceiling: float = 0.0  # the compute limit (the device's measured or data-sheet FLOP/s); 0: not known
    bytes_per_token: int = 0
    kind: str = "cpu"
    n_models: int = 0  # models measured on this machine that the correction was learned from
    notes: list[str] = field(default_factory=list)

    @property
    def tg_spread(self) -> float:
        return (self.tg_high - self.tg_low) / 2

    def text(self) -> str:
        """"≈ 35 t/s here ± 4" (or why there is no prediction)."""
        if self.tg <= 0:
            return "speed not predicted"
        digits = 0 if self.tg >= 10 else 1
        return f"≈ {self.tg:.{digits}f} t/s here ± {self.tg_spread:.{digits}f}"

    def short(self) -> str:
        """"≈ 35 t/s here" for a badge ("" when not predicted)."""
        if self.tg <= 0:
            return ""
        return f"≈ {self.tg:.{0 if self.tg >= 10 else 1}f} t/s here"

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _flops_per_token(traffic: TokenTraffic, header: GGUFHeader, n_ctx: int) -> float:
    attention = 4.0 * header.block_count * n_ctx * header.embedding_length  # QK^T and AV, half the context
    return 2.0 * traffic.active_params + attention / 2


def _pp_rates(records: Iterable[RunRecord], machine_id: str, kind_of: dict[str, str]) -> dict[str, list[float]]:
    """FLOP/s reached in past prompt tests, per placement kind."""
    out: dict[str, list[float]] = {}
    headers: dict[str, GGUFHeader | None] = {}
    for record in records:
        r = record.result
        if (machine_id and record.machine.get("machine_id") != machine_id) or r.status != "ok" \
                or r.n_prompt <= 0 or r.n_gen > 0 or r.avg_ts <= 0:
            continue
        if r.model_path not in headers:
            headers[r.model_path] = _header_or_none(r.model_path)
        header = headers[r.model_path]
        if header is None:
            continue
        traffic = traffic_for_result(r, header=header)
        kind = kind_of.get(r.model_path) or traffic.kind
        out.setdefault(kind, []).append(r.avg_ts * _flops_per_token(traffic, header, r.n_depth + r.n_prompt))
    return out


def predict_speed(header: GGUFHeader, bandwidth: MachineBandwidth, *, history: Iterable[RunRecord] = (),
                  machine_id: str = "", n_gpu_layers: int = 0, gpu: bool = False, n_depth: int = 0,
                  n_gen: int = 128, n_prompt: int = 512, type_k: str = "f16", type_v: str = "f16",
                  threads: int = 0, cpu_flags: Iterable[str] = (), cache_bytes: int = 0) -> SpeedPrediction:
    """tgN and ppN predicted for this machine, corrected by its history (RunRecords; only read).

    `cache_bytes` (the L3 size, CpuInfo.caches) keeps models the cache largely holds apart from the others:
    each learns from its own kind only.
    """
    records = list(history)
    traffic = token_traffic(header, n_gpu_layers=n_gpu_layers, gpu=gpu, n_depth=n_depth, n_gen=n_gen,
                            type_k=type_k, type_v=type_v)
    out = SpeedPrediction(bytes_per_token=traffic.total, kind=traffic.regime(cache_bytes))
    seconds = traffic.seconds_at(bandwidth)
    if seconds is None:
        missing = "GPU" if traffic.gpu and bandwidth.gpu_peak <= 0 else "CPU"
        out.notes.append(f"{missing} memory bandwidth not measured: speed not predicted")
    else:
        samples = history_samples(records, bandwidth, machine_id=machine_id, cache_bytes=cache_bytes)
        cores = threads or (bandwidth.cpu.threads if bandwidth.cpu else 1)
        correction = fit_correction(samples, kind=out.kind, threads=cores)
        out.tg_ceiling = 1.0 / seconds
        out.tg = 1.0 / correction.seconds(seconds, traffic.n_layer or 1, traffic.active_params)
        # A relative spread as a factor either way: a 100% spread never gives a negative low end.
        out.tg_low, out.tg_high = out.tg / (1 + correction.spread), out.tg * (1 + correction.spread)
        out.n_models = correction.n_models
        if not correction.n_models:
            out.notes.append("no generation results on this machine yet: typical efficiency assumed")
    flops = _flops_per_token(traffic, header, n_depth + n_prompt)
    device_flops = bandwidth.cpu_flops if traffic.kind == "cpu" else bandwidth.gpu_flops if traffic.kind == "gpu" \
        else 0.0
    if device_flops > 0 and n_prompt > 0:
        out.pp_ceiling = device_flops / prompt_flops_per_token(header, n_prompt=n_prompt, n_depth=n_depth)
    rates = _pp_rates(records, machine_id, {}).get(traffic.kind, [])
    if rates and flops > 0:
        rate = statistics.median(rates)
        rel = max(0.15, (max(rates) - min(rates)) / 2 / rate) if len(rates) > 1 else 0.3
        out.pp = rate / flops
        out.pp_low, out.pp_high = out.pp * (1 - rel), out.pp * (1 + rel)
    elif traffic.kind == "cpu" and flops > 0:
        flags = set(cpu_flags)
        per_core = next((f for flag, f in _CORE_FLOPS if flag in flags), 10e9)
        cores = threads or (bandwidth.cpu.threads if bandwidth.cpu else 1)
        out.pp = per_core * cores / flops
        out.pp_low, out.pp_high = out.pp * 0.5, out.pp * 1.5
        out.notes.append("prompt speed from a typical per-core throughput (no prompt results on this machine yet)")
    else:
        out.notes.append("prompt speed not predicted: no prompt results with this offload on this machine yet")
    return out
