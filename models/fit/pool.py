"""A model's memory across a pool of devices (local GPUs, RPC servers), layers placed as llama.cpp splits them."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from models.errors import ModelFileError
from models.fit.estimate import GPU_RESERVE, RAM_RESERVE, FlashAttn, _compute, _row_bytes, estimate_memory
from models.fit.shape import model_dims
from models.gguf.reader import GGUFHeader
from models.units import fmt_bytes

log = logging.getLogger(__name__)

_INPUT = ("token_embd", "position_embd", "token_types")


@dataclass
class PoolDevice:
    """One device of the pool and its share of the model, in bytes (as llama.cpp's buffers for it)."""

    name: str  # llama.cpp's device name: CUDA0, RPC0, ... ("CPU" for the host)
    memory_free: int  # as the device (or its server) reports it
    layers: list[int] = field(default_factory=list)  # repeating layers placed here (n_layer: the output layer)
    weights: int = 0
    kv: int = 0
    compute: int = 0
    output: int = 0
    reserve: int = 0  # kept free beyond the buffers (driver context, allocator slack)

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + self.output

    @property
    def fits(self) -> bool:
        return self.total <= self.memory_free - self.reserve


@dataclass
class PoolEstimate:
    """The model at one context and offload across the host and the pool's devices, and whether each holds it."""

    n_ctx: int
    n_gpu_layers: int
    devices: list[PoolDevice]  # the host first, then the devices in llama.cpp's order
    summary: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return all(d.fits for d in self.devices)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for entry, dev in zip(out["devices"], self.devices):
            entry.update(total=dev.total, fits=dev.fits)
        out["fits"] = self.fits
        return out


def layer_devices(n_layer: int, n_gpu_layers: int, shares: Sequence[float]) -> list[int | None]:
    """The device index for layers 0..n_layer (the last is the output layer), None for the CPU: llama.cpp's
    llama_model::load_tensors (cumulative shares, std::upper_bound of the layer's position among offloaded ones)."""
    if not shares:
        return [None] * (n_layer + 1)
    total = float(sum(shares))
    weights = list(shares) if total > 0 else [1.0] * len(shares)
    total = total if total > 0 else float(len(shares))
    running, splits = 0.0, []
    for share in weights:
        running += share
        splits.append(running / total)
    ngl = n_layer + 1 if n_gpu_layers < 0 else min(n_gpu_layers, n_layer + 1)
    start = max(n_layer + 1 - ngl, 0)
    out: list[int | None] = []
    for il in range(n_layer + 1):
        if il < start or il - start >= ngl:
            out.append(None)
        else:
            out.append(min(bisect.bisect_right(splits, (il - start) / ngl), len(splits) - 1))
    return out


def estimate_pool(header: GGUFHeader, devices: Sequence[tuple[str, int]], *, host_free: int, n_ctx: int,
                  n_gpu_layers: int = -1, tensor_split: Sequence[float] = (), type_k: str = "f16",
                  type_v: str = "f16", n_batch: int = 2048, n_ubatch: int = 512, flash_attn: FlashAttn = "auto",
                  use_mmap: bool = True, cpu_flags: Sequence[str] = ()) -> PoolEstimate:
    """Memory per device when `devices` ((name, free bytes) in llama.cpp's order: RPC servers first, then local
    GPUs) share the offloaded layers by free memory, or by `tensor_split` when it has a non-zero share."""
    if not devices:
        raise ModelFileError("A pool needs at least one device besides the CPU.")
    base = estimate_memory(header, n_ctx=n_ctx, type_k=type_k, type_v=type_v, n_batch=n_batch, n_ubatch=n_ubatch,
                           n_gpu_layers=n_gpu_layers, flash_attn=flash_attn, gpu=True, use_mmap=use_mmap,
                           cpu_flags=cpu_flags)
    host = base.device("CPU")
    pool = [PoolDevice(name, memory_free=free, reserve=GPU_RESERVE) for name, free in devices]
    shares = list(tensor_split) if any(s > 0 for s in tensor_split) else [max(free, 0) for _, free in devices]
    n_layer = header.block_count
    placed = layer_devices(n_layer, n_gpu_layers, shares[:len(pool)] + [0.0] * (len(pool) - len(shares)))
    for il, index in enumerate(placed):
        if index is not None:
            pool[index].layers.append(il)
    names = {t.name for t in header.tensors}
    for tensor in header.tensors:
        if tensor.name.startswith(_INPUT):
            layer = -1
        elif tensor.name.startswith("blk."):
            layer = int(tensor.name.split(".")[1])
        else:
            layer = n_layer
        where = placed[layer] if 0 <= layer <= n_layer else None
        if where is not None:
            pool[where].weights += tensor.n_bytes
        output_at = placed[n_layer]
        if tensor.name == "token_embd.weight" and "output.weight" not in names and output_at is not None:
            pool[output_at].weights += tensor.n_bytes  # tied output: a copy on the output device
    unknown: list[str] = []
    d = model_dims(header, unknown)
    kv_size = base.n_ctx
    if d is not None:
        flash = base.flash_attn
        n_tokens = min(kv_size, min(min(n_ctx, n_batch), n_ubatch))
        swa_size = min(kv_size, -(-(d.n_swa + n_tokens) // 256) * 256) if d.n_swa else kv_size
        v_max = max(h * v for h, v in zip(d.heads_kv, d.head_v))
        for il in range(d.n_layer):
            index = placed[il]
            if index is None or not d.has_kv[il]:
                continue
            if d.recurrent[il]:
                pool[index].kv += d.recurrent[il]
                continue
            size = swa_size if d.swa[il] else kv_size
            k = _row_bytes(type_k, d.heads_kv[il] * d.head_k[il] * size)
            v = 0 if d.mla else _row_bytes(type_v, (d.heads_kv[il] * d.head_v[il] if flash else v_max) * size)
            pool[index].kv += k + v
        for index, dev in enumerate(pool):
            holds_output = placed[n_layer] == index
            layers = any(il < n_layer for il in dev.layers)
            if layers or holds_output:
                dev.compute = _compute(d, n_tokens=n_tokens, n_outputs=n_tokens, kv_size=kv_size, flash=flash,
                                       layers=layers, output=holds_output)
    host_dev = PoolDevice("CPU", memory_free=host_free, weights=host.weights, kv=host.kv, compute=host.compute,
                          output=host.output, reserve=RAM_RESERVE,
                          layers=[il for il, index in enumerate(placed) if index is None])
    estimate = PoolEstimate(n_ctx=kv_size, n_gpu_layers=base.n_gpu_layers, devices=[host_dev, *pool],
                            notes=base.notes + [f"unknown: {u}" for u in base.unknown + unknown])
    parts = [f"{dev.name} {fmt_bytes(dev.total)} of {fmt_bytes(max(dev.memory_free - dev.reserve, 0))}"
             + ("" if dev.fits else " (short)") for dev in estimate.devices]
    verb = "Fits the pool" if estimate.fits else "Does not fit the pool"
    estimate.summary = f"{verb} at {n_ctx} tokens of context: {'; '.join(parts)}."
    return estimate
