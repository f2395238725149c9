"""Bytes read from memory to generate one token, per device, from a GGUF header: the bandwidth limit on t/s."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from models.fit.shape import model_dims
from models.gguf.reader import GGUFHeader
from models.gguf.types import GGML_TYPE_IDS, GGML_TYPES

if TYPE_CHECKING:
    from models.bench.spec import BenchResult
    from models.machine.bandwidth import MachineBandwidth

log = logging.getLogger(__name__)

_LAYER = re.compile(r"^blk\.(\d+)\.")
_KV_PAD = 256  # llama.cpp reads the KV cache in steps of 256 cells (llama_kv_cache::get_padding)
_CACHE_RESIDENT = 0.75  # CPU bytes per token up to 3/4 of the L3: read partly from the cache (a 300 MiB L3:
# 150 MiB per token ran at 68-151% of the RAM limit, 280 MiB and more at 83-106%)


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

            header = read_model_header(Path(result.model_path))
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
