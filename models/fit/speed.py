"""Generation and prompt speed predicted from a GGUF header, this machine's memory bandwidth and its past results.

Generating one token reads every weight it multiplies by once (only the active experts of a mixture-of-experts
model) and the KV cache up to the current position, so memory bandwidth / bytes read is a ceiling on t/s.
Measured speed = ceiling x efficiency minus a per-layer overhead (graph, threads, kernel launches); both are
learned per machine from the results store, so the prediction improves as the user measures.
"""

from __future__ import annotations

import logging
import math
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.fit.shape import model_dims
from models.gguf.reader import GGUFHeader
from models.gguf.types import GGML_TYPE_IDS, GGML_TYPES

if TYPE_CHECKING:
    from models.bench.spec import BenchResult
    from models.machine.bandwidth import MachineBandwidth
    from models.results.store import RunRecord

log = logging.getLogger(__name__)

_LAYER = re.compile(r"^blk\.(\d+)\.")
_KV_PAD = 256  # llama.cpp reads the KV cache in steps of 256 cells (llama_kv_cache::get_padding)
# Priors before any result on this machine, fitted on a 16-core Xeon (benchmarks/predict_check.py): llama.cpp
# reads the weights of a model far larger than the caches about 1/3 faster than our threaded read test
# measures, the arithmetic coming on top; a GPU reaches about 4/5 of its data-sheet peak; a model that the
# last-level cache largely holds is read faster still ("cpu-cache"). Each layer costs some fixed time per token.
_PRIOR_A = {"cpu": 0.75, "cpu-cache": 1 / 1.4, "gpu": 1 / 0.8, "partial": 1 / 0.8}
_PRIOR_LAYER_S = {"cpu": 20e-6, "cpu-cache": 20e-6, "gpu": 8e-6, "partial": 20e-6}
# Arithmetic per active parameter and token, in core-seconds: 5.3 ms per 1.1 B parameters on 16 Xeon cores.
_PRIOR_PARAM_S = {"cpu": 85e-12, "cpu-cache": 85e-12, "gpu": 1e-15, "partial": 85e-12 / 8}
_CACHE_RESIDENT = 0.75  # CPU bytes per token up to 3/4 of the L3: read partly from the cache (a 300 MiB L3:
# 150 MiB per token ran at 68-151% of the RAM limit, 280 MiB and more at 83-106%)
_PRIOR_WEIGHT = 0.01  # how strongly the priors hold against the history (in squared relative error)
_PRIOR_SPREAD = 0.40  # the relative uncertainty with no history at all
# Per-core matmul throughput for prompt processing with no history, by the widest SIMD the CPU has.
_CORE_FLOPS = (("AVX512", 80e9), ("AVX2", 40e9), ("NEON", 25e9))


@dataclass
class TokenTraffic:
    """Bytes read from each device's memory to generate one token."""

    weights_cpu: int = 0
    weights_gpu: int = 0
    kv_cpu: int = 0
    kv_gpu: int = 0
    n_layer: int = 0
    active_params: int = 0  # parameters multiplied per token (the active experts only)
    approximate: bool = False  # from the file size alone (no header)

    @property
    def cpu(self) -> int:
        return self.weights_cpu + self.kv_cpu

    @property
    def gpu(self) -> int:
        return self.weights_gpu + self.kv_gpu

    @property
    def total(self) -> int:
        return self.cpu + self.gpu

    @property
    def kind(self) -> str:
        """Where the bytes live: "cpu", "gpu" or "partial" (each learns its own correction)."""
        return "partial" if self.cpu and self.gpu and self.weights_cpu > self.weights_gpu // 50 else \
            "gpu" if self.gpu else "cpu"

    def regime(self, cache_bytes: int = 0) -> str:
        """`kind`, with "cpu-cache" for a CPU model small enough that the L3 cache serves much of it."""
        if self.kind == "cpu" and cache_bytes and self.cpu <= _CACHE_RESIDENT * cache_bytes:
            return "cpu-cache"
        return self.kind

    def seconds_at(self, bandwidth: MachineBandwidth) -> float | None:
        """The time the bytes take at full bandwidth (the devices read one after the other, layer by layer)."""
        if (self.cpu and bandwidth.cpu_read <= 0) or (self.gpu and bandwidth.gpu_peak <= 0):
            return None
        return (self.cpu / bandwidth.cpu_read if self.cpu else 0.0) + \
            (self.gpu / bandwidth.gpu_peak if self.gpu else 0.0)

    def ceiling(self, bandwidth: MachineBandwidth) -> float | None:
        """The bandwidth limit on generation, t/s (None where a device's bandwidth is not measured)."""
        seconds = self.seconds_at(bandwidth)
        return 1.0 / seconds if seconds else None


def _row_bytes(type_name: str, n: int) -> int:
    type_id = GGML_TYPE_IDS.get(type_name.lower(), 1)
    _, block, size = GGML_TYPES[type_id]
    return -(-n // block) * size


def _cells(position: int, limit: int) -> int:
    return min(max(_KV_PAD, -(-(position + 1) // _KV_PAD) * _KV_PAD), limit)


def token_traffic(header: GGUFHeader, *, n_gpu_layers: int = 0, gpu: bool = False, n_depth: int = 0,
                  n_gen: int = 128, type_k: str = "f16", type_v: str = "f16") -> TokenTraffic:
    """Bytes read per generated token, averaged over a tgN test at depth `n_depth`, per device.

    Layers are placed as models.fit.estimate places them (the last `n_gpu_layers` layers and the output on the
    GPU, the input embedding on the CPU). The embedding is one row per token unless it doubles as the output.
    """
    n_layer = header.block_count
    ngl = (n_layer + 1 if n_gpu_layers < 0 else min(n_gpu_layers, n_layer + 1)) if gpu else 0
    i_gpu_start = max(n_layer + 1 - ngl, 0)
    out = TokenTraffic(n_layer=n_layer)
    names = {t.name for t in header.tensors}
    share = header.expert_used_count / header.expert_count if header.expert_count and header.expert_used_count \
        else 1.0
    for tensor in header.tensors:
        match = _LAYER.match(tensor.name)
        layer = int(match.group(1)) if match else n_layer
        read, params = tensor.n_bytes, tensor.n_elements
        if tensor.name.startswith(("token_embd", "position_embd", "token_types")):
            rows = tensor.shape[1] if len(tensor.shape) > 1 else 1
            read, params = tensor.n_bytes // max(rows, 1), 0  # a lookup reads one row
            layer = -1
            if tensor.name == "token_embd.weight" and "output.weight" not in names:
                # Tied output: the whole matrix is multiplied once per token, on the output's device.
                out_gpu = gpu and ngl > 0 and n_layer >= i_gpu_start
                if out_gpu:
                    out.weights_gpu += tensor.n_bytes
                else:
                    out.weights_cpu += tensor.n_bytes
                out.active_params += tensor.n_elements
        elif "_exps" in tensor.name:
            read, params = int(read * share), int(params * share)
        out.active_params += params
        if gpu and ngl and layer >= i_gpu_start and layer >= 0:
            out.weights_gpu += read
        else:
            out.weights_cpu += read
    dims = model_dims(header, [])
    if dims is None:
        return out
    kv_size = -(-(n_depth + max(n_gen, 1)) // _KV_PAD) * _KV_PAD
    positions = range(n_depth, n_depth + max(n_gen, 1))
    for il in range(dims.n_layer):
        if dims.recurrent[il]:
            kv = dims.recurrent[il]
        elif dims.heads_kv[il] == 0:
            continue
        else:
            limit = min(kv_size, -(-(dims.n_swa + 1) // _KV_PAD) * _KV_PAD) if dims.swa[il] and dims.n_swa \
                else kv_size
            cells = sum(_cells(p, limit) for p in positions) / len(positions)
            k = _row_bytes(type_k, int(dims.heads_kv[il] * dims.head_k[il] * cells))
            v = 0 if dims.mla else _row_bytes(type_v, int(dims.heads_kv[il] * dims.head_v[il] * cells))
            kv = k + v  # a layer sharing an earlier layer's cache still reads it
        if gpu and ngl and il >= i_gpu_start:
            out.kv_gpu += kv
        else:
            out.kv_cpu += kv
    return out


def traffic_for_result(result: BenchResult, *, header: GGUFHeader | None = None) -> TokenTraffic:
    """The traffic of a stored generation result: from its model's header where the file is still here, else
    from the file size it recorded (every weight read once; an approximation for MoE models and long depths)."""
    if header is None and result.model_path and Path(result.model_path).is_file():
        try:
            from models.gguf.split import read_model_header

            header = read_model_header(result.model_path)
        except Exception as error:  # noqa: BLE001 - a file changed or unreadable since: fall back to its size
            log.debug("header of %s not readable: %s", result.model_path, error)
    gpu = bool(result.gpu_info) and result.n_gpu_layers != 0
    if header is not None:
        return token_traffic(header, n_gpu_layers=result.n_gpu_layers, gpu=gpu, n_depth=result.n_depth,
                             n_gen=result.n_gen, type_k=result.type_k, type_v=result.type_v)
    size = int(result.model_size)
    return TokenTraffic(weights_gpu=size if gpu else 0, weights_cpu=0 if gpu else size,
                        active_params=int(result.model_n_params), approximate=True)


def bandwidth_share(result: BenchResult, bandwidth: MachineBandwidth, *,
                    header: GGUFHeader | None = None) -> float | None:
    """A generation result's speed as a fraction of this machine's memory-bandwidth limit (None: not known).

    "tg at 62% of this machine's memory-bandwidth limit" is `bandwidth_share(...) = 0.62`.
    """
    if result.status != "ok" or result.n_gen <= 0 or result.n_prompt > 0 or result.avg_ts <= 0:
        return None
    ceiling = traffic_for_result(result, header=header).ceiling(bandwidth)
    return result.avg_ts / ceiling if ceiling else None


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

        return read_model_header(path)
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
