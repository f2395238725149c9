"""Speed predicted on this machine: its stored (or newly measured) bandwidth and its own results, read-only."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.fit.speed import SpeedPrediction, predict_speed
from models.gguf.reader import GGUFHeader

if TYPE_CHECKING:
    from models.bench.spec import BenchResult
    from models.machine.bandwidth import MachineBandwidth
    from models.machine.hardware import HardwareInfo
    from models.results.store import RunRecord

log = logging.getLogger(__name__)


def this_machine_history() -> tuple[str, list[RunRecord]]:
    """(machine_id, this machine's stored runs); a missing or unreadable store is no history, never an error."""
    from models.errors import TokenometerError
    from models.machine.hardware import machine_fingerprint
    from models.results.store import ResultsStore

    machine_id = str(machine_fingerprint().get("machine_id", ""))
    try:
        with ResultsStore(create=False) as store:
            runs = [r for r in store.list_runs() if r.machine.get("machine_id") == machine_id]
    except (TokenometerError, OSError) as error:
        log.warning("No results history for the speed prediction: %s", error)
        runs = []
    return machine_id, runs


def gpu_usable(hardware: HardwareInfo) -> bool:
    """Whether layers can go to a GPU: one is present and the llama.cpp build (where asked) has a GPU device."""
    build = hardware.llama
    return bool(hardware.gpus) and (build is None or bool(build.error) or bool(build.gpu_devices))


def predict_here(header: GGUFHeader, hardware: HardwareInfo, *, n_gpu_layers: int, n_depth: int = 0,
                 n_gen: int = 128, n_prompt: int = 512, type_k: str = "f16", type_v: str = "f16",
                 bandwidth: MachineBandwidth | None = None, measure: bool = True) -> SpeedPrediction:
    """tg/pp predicted for this machine; measures the bandwidth first when none is stored (`measure`)."""
    from models.machine.bandwidth import machine_bandwidth

    if bandwidth is None:
        bandwidth = machine_bandwidth(measure=measure)
    machine_id, runs = this_machine_history()
    return predict_speed(header, bandwidth, history=runs, machine_id=machine_id, n_gpu_layers=n_gpu_layers,
                         gpu=gpu_usable(hardware), n_depth=n_depth, n_gen=n_gen, n_prompt=n_prompt, type_k=type_k,
                         type_v=type_v, cpu_flags=hardware.cpu.flags, cache_bytes=hardware.cpu.caches.get("L3", 0))


def speed_predictor(hardware: HardwareInfo, *, measure: bool = True) -> Callable[..., SpeedPrediction]:
    """A predictor for many headers (a repo's quants): the bandwidth and history are read once.

    Call it as predictor(header, n_gpu_layers=N); it never raises for a missing measurement (the prediction
    then says "speed not predicted" and why).
    """
    from models.machine.bandwidth import machine_bandwidth

    bandwidth = machine_bandwidth(measure=measure)
    machine_id, runs = this_machine_history()
    cache = hardware.cpu.caches.get("L3", 0)

    def predict(header: GGUFHeader, *, n_gpu_layers: int, n_gen: int = 128) -> SpeedPrediction:
        return predict_speed(header, bandwidth, history=runs, machine_id=machine_id, n_gpu_layers=n_gpu_layers,
                             gpu=gpu_usable(hardware), n_gen=n_gen, cpu_flags=hardware.cpu.flags, cache_bytes=cache)

    return predict


def result_prediction(row: dict[str, Any], *, cache: dict[str, Any]) -> dict[str, float]:
    """The prediction for a generation result just measured (BenchResult.to_json()), made as `tokenometer fit`
    makes it, to be stored beside it: the predicted t/s and range, the bandwidth limit and the share of it
    reached; for a prompt test the compute limit and the share of it reached. {} for other tests or where the
    limits were never measured (no measuring here: it would disturb the benchmark). `cache` keeps the bandwidth, history and headers across one job's results."""
    from models.bench.spec import BenchResult
    from models.gguf.split import read_model_header
    from models.machine.bandwidth import load_bandwidth
    from models.machine.hardware import probe_cpu

    r = BenchResult.from_json(row)
    prompt = r.n_prompt > 0 and r.n_gen == 0
    if r.status != "ok" or not r.model_path or not (prompt or (r.n_gen > 0 and r.n_prompt == 0)):
        return {}
    if "bandwidth" not in cache:
        cache["bandwidth"] = load_bandwidth()
        cache["history"] = this_machine_history() if cache["bandwidth"] is not None else ("", [])
        cache["l3"] = probe_cpu([]).caches.get("L3", 0)
    bandwidth = cache["bandwidth"]
    if bandwidth is None:
        return {}
    headers = cache.setdefault("headers", {})
    if r.model_path not in headers:
        headers[r.model_path] = read_model_header(Path(r.model_path))
    if prompt:
        return _compute_estimate(r, bandwidth, headers[r.model_path])
    machine_id, runs = cache["history"]
    p = predict_speed(headers[r.model_path], bandwidth, history=runs, machine_id=machine_id,
                      n_gpu_layers=r.n_gpu_layers, gpu=bool(r.gpu_info) and r.n_gpu_layers != 0, n_depth=r.n_depth,
                      n_gen=r.n_gen, type_k=r.type_k, type_v=r.type_v, cache_bytes=cache["l3"])
    if p.tg <= 0:
        return {}
    return {"predicted_ts": p.tg, "low_ts": p.tg_low, "high_ts": p.tg_high, "ceiling_ts": p.tg_ceiling,
            "share_of_limit": r.avg_ts / p.tg_ceiling, "bytes_per_token": float(p.bytes_per_token),
            "n_models": float(p.n_models)}


def _compute_estimate(r: BenchResult, limits: MachineBandwidth, header: GGUFHeader) -> dict[str, float]:
    """A prompt result against the compute limit: {} where the device's FLOP/s are not known ("not measured")."""
    from models.fit.flops import compute_limit, device_flops

    ceiling, per_token = compute_limit(r, limits, header=header)
    if ceiling <= 0 or r.avg_ts <= 0:
        return {}
    return {"compute_ceiling_ts": ceiling, "share_of_compute_limit": r.avg_ts / ceiling,
            "flops_per_token": per_token, "device_flops": device_flops(r, limits, header=header)}


def memory_error_here(architecture: str) -> str:
    """"" or a line on how far the memory estimate was from llama.cpp's buffers for this architecture here."""
    from models.fit.history import memory_estimate_errors

    machine_id, runs = this_machine_history()
    found = next((e for e in memory_estimate_errors(runs, machine_id=machine_id) if e.architecture == architecture),
                 None)
    if found is None:
        return ""
    return (f"the estimate was {found.mean:+.0%} off llama.cpp's buffers on average for {architecture} here "
            f"({found.n_runs} runs of {found.models} models; worst {found.worst:+.0%})")
