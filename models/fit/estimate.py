"""How much memory a GGUF model needs at a context size and offload, and whether it fits this machine."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from models.errors import ModelFileError
from models.fit.shape import Dims, model_dims, place_weights
from models.gguf.reader import ArraySummary, GGUFHeader
from models.gguf.split import read_model_header
from models.gguf.types import GGML_TYPE_IDS, GGML_TYPES
from models.units import fmt_bytes

if TYPE_CHECKING:
    from models.bench.spec import BenchJob, BenchTest
    from models.machine.hardware import HardwareInfo

log = logging.getLogger(__name__)

FlashAttn = Literal["on", "off", "auto"]
Verdict = Literal["gpu", "partial", "cpu", "no_fit"]
MIB = 1024 * 1024
_MAX_CTX = 1 << 24  # llama.cpp keeps n_ctx in a uint32; 16M tokens is beyond every model
# Reserve beyond the logged buffers: the CUDA/Metal context and allocator slack are not in any buffer
# (NVML counted 524-533 MiB more than the logged CUDA buffers for every model checked on an H200).
GPU_RESERVE = 576 * MIB
RAM_RESERVE = 1024 * MIB
# Tensors of width n_embd / ffn_width / n_vocab alive at the peak of each graph stage, read off llama.cpp's
# logged compute buffers (benchmarks/fit_check.py prints the check): gate, up and their product in the FFN.
_K_RESID, _K_FFN, _K_OUT = 4, 3, 1


@dataclass
class DeviceMemory:
    """One device's share: the four buffers llama.cpp logs, in bytes."""

    device: str  # "CPU" or "GPU"
    weights: int = 0
    kv: int = 0
    compute: int = 0
    output: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + self.output


@dataclass
class MemoryEstimate:
    """The estimate for one configuration; `unknown` says what could not be estimated and why."""

    n_ctx: int  # as llama.cpp will allocate it (padded to 256)
    n_gpu_layers: int  # after clamping to the layers the model has
    flash_attn: bool
    devices: list[DeviceMemory]
    kv_per_token: int = 0  # bytes per context token across all full-attention layers
    expert_weights: int = 0  # bytes of MoE expert tensors (all experts; only n_used are read per token)
    unknown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def _sum(self, name: str) -> int:
        return sum(getattr(d, name) for d in self.devices)

    @property
    def weights(self) -> int:
        return self._sum("weights")

    @property
    def kv(self) -> int:
        return self._sum("kv")

    @property
    def compute(self) -> int:
        return self._sum("compute")

    @property
    def output(self) -> int:
        return self._sum("output")

    @property
    def total(self) -> int:
        return self._sum("total")

    def device(self, name: str) -> DeviceMemory:
        return next((d for d in self.devices if d.device == name), DeviceMemory(name))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(weights=self.weights, kv=self.kv, compute=self.compute, output=self.output, total=self.total)
        for entry, dev in zip(out["devices"], self.devices):
            entry["total"] = dev.total
        return out


@dataclass
class FitVerdict:
    """Whether and how the model runs here."""

    verdict: Verdict
    summary: str
    n_ctx: int
    n_gpu_layers: int  # suggested
    max_ctx: int  # largest context that fits with the suggested offload (0: none)
    headroom_ram: int  # bytes left after the estimate (negative: short by that much)
    headroom_vram: int
    estimate: MemoryEstimate
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["estimate"] = self.estimate.to_json()
        return out


def check_loadable(header: GGUFHeader) -> None:
    """Refuse, with llama.cpp's reason, a file that llama.cpp 0.3.36 was seen to refuse at load.

    The GGUF reader already refuses what ggml's GGUF parser refuses; these are the llama-level checks that
    fail later in llama_model_load (checked against the real library in a one-off run, see the fit tests).
    """
    if not header.architecture:
        raise ModelFileError("The file has no general.architecture; llama.cpp refuses it "
                             "(\"unknown model architecture: ''\").")
    if not header.tensors:
        raise ModelFileError(f"The file holds no tensors; llama.cpp refuses a {header.architecture} model without "
                             "its weights (\"tensor 'token_embd.weight' not found\").")
    for tensor in header.tensors:
        if 0 in tensor.shape and not _empty_kv_projection(header, tensor.name):
            raise ModelFileError(f"Tensor '{tensor.name}' has a zero-size dimension (shape {list(tensor.shape)}); "
                                 "llama.cpp refuses it (\"has wrong shape\").")
    tokens = header.metadata.get("tokenizer.ggml.tokens")
    if tokens is not None:
        strings = tokens.element_type == "string" if isinstance(tokens, ArraySummary) else \
            isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)
        if not strings:
            raise ModelFileError("tokenizer.ggml.tokens is not an array of strings; llama.cpp refuses it "
                                 "(\"invalid gguf type for tokenizer.ggml.tokens\").")


def _empty_kv_projection(header: GGUFHeader, name: str) -> bool:
    """A K/V projection of a layer with no KV heads is (n_embd, 0): the one zero-size shape llama.cpp expects."""
    match = re.match(r"^blk\.(\d+)\.attn_[kv]\.", name)
    heads = header.head_count_kv_per_layer
    return match is not None and int(match.group(1)) < len(heads) and heads[int(match.group(1))] == 0


def _row_bytes(type_name: str, n: int) -> int:
    type_id = GGML_TYPE_IDS.get(type_name.lower())
    if type_id is None:
        raise ModelFileError(f"Unknown KV cache type {type_name!r}.")
    _, block, size = GGML_TYPES[type_id]
    return -(-n // block) * size


def _compute(d: Dims, *, n_tokens: int, n_outputs: int, kv_size: int, flash: bool, layers: bool,
             output: bool) -> int:
    """ggml-alloc's high-water mark for the prompt graph (n_ubatch tokens, full KV, every token output).

    The peak is the largest of three stages, each the tensors alive at once there (f32 activations):
    attention (KQ scores without flash attention), the feed-forward block, and the output projection.
    """
    t, f32 = n_tokens, 4
    embd = d.n_embd * t * f32
    mask = kv_size * t * (2 if flash else 4)  # the KQ mask lives through every layer; f16 with flash attention
    n_head, n_kv = max(d.heads), max(d.heads_kv)
    qkv = (n_head * max(d.head_k) + n_kv * (max(d.head_k) + max(d.head_v))) * t * f32
    scores = 0 if flash else kv_size * t * n_head * f32
    attention = scores + mask + _K_RESID * embd + qkv
    feed_forward = _K_FFN * d.ffn_width * t * f32 + _K_RESID * embd + mask
    logits = _K_OUT * d.n_vocab * n_outputs * f32 + 2 * embd
    peak = max(attention, feed_forward) if layers else 0
    return int(max(peak, logits) if output else peak)


def estimate_memory(header: GGUFHeader, *, n_ctx: int, type_k: str = "f16", type_v: str = "f16",
                    n_batch: int = 2048, n_ubatch: int = 512, n_gpu_layers: int = 0,
                    flash_attn: FlashAttn = "auto", swa_full: bool = False, gpu: bool = True,
                    use_mmap: bool = True, cpu_flags: Iterable[str] = ()) -> MemoryEstimate:
    """Memory for one model load and context, split between the CPU and the (first) GPU.

    `gpu=False` places everything on the CPU whatever n_gpu_layers says (as a CPU-only build does).
    `cpu_flags` (CpuInfo.flags) lets the estimate follow ggml's repacking of some quant types on that CPU.
    """
    if not 0 < n_ctx <= _MAX_CTX:
        raise ModelFileError(f"Context size {n_ctx} is out of range (1 to {_MAX_CTX}).")
    if n_batch < 1 or n_ubatch < 1:
        raise ModelFileError("n_batch and n_ubatch must be at least 1.")
    check_loadable(header)
    unknown: list[str] = []
    notes: list[str] = []
    n_layer = header.block_count
    # llama.cpp (and llama-bench's default -1): a negative n_gpu_layers offloads every layer and the output.
    ngl = (n_layer + 1 if n_gpu_layers < 0 else min(n_gpu_layers, n_layer + 1)) if gpu else 0
    i_gpu_start = max(n_layer + 1 - ngl, 0)
    placed = place_weights(header, i_gpu_start, ngl > 0, use_mmap=use_mmap, cpu_flags=cpu_flags)
    cpu = DeviceMemory("CPU", weights=placed.cpu)
    gpu_dev = DeviceMemory("GPU", weights=placed.gpu)
    if placed.repacked:
        notes.append(f"{placed.repacked / MIB:.1f} MiB of CPU weights are repacked for this CPU (CPU_REPACK); "
                     "with mmap their file pages are counted too, though the system may drop them")
    if header.is_split and len({t.shard for t in header.tensors}) < header.split_count:
        # Only a merged header (models.gguf.split) holds every part's tensors; one shard alone undercounts.
        raise ModelFileError(f"This header is part {header.split_index + 1} of a {header.split_count}-part split "
                             "model; read all parts (models.gguf.split.read_model_header) to estimate it.")
    if type_v.lower() not in ("f16", "f32", "bf16") and flash_attn == "off":
        raise ModelFileError("A quantized V cache needs flash attention (llama.cpp refuses it with -fa off).")
    flash = flash_attn != "off"  # "auto" resolves to on wherever the device supports it (CPU, CUDA, Metal)
    kv_size = -(-n_ctx // 256) * 256
    d = model_dims(header, unknown)
    estimate = MemoryEstimate(n_ctx=kv_size, n_gpu_layers=ngl, flash_attn=flash, devices=[cpu, gpu_dev],
                              expert_weights=placed.experts, unknown=unknown, notes=notes)
    if d is None:
        return estimate
    batch = min(n_ctx, n_batch)
    n_tokens = min(kv_size, min(batch, n_ubatch))
    swa_size = min(kv_size, -(-(d.n_swa + n_tokens) // 256) * 256) if d.n_swa and not swa_full else kv_size
    # Without flash attention the V cache is stored transposed, and every layer's V rows are padded to the
    # widest layer's (llama_kv_cache: n_embd_v_gqa_max when v_trans).
    v_max = max(h * v for h, v in zip(d.heads_kv, d.head_v))
    for il in range(d.n_layer):
        device = gpu_dev if il >= i_gpu_start and ngl else cpu
        if d.recurrent[il]:
            device.kv += d.recurrent[il]
            continue
        if not d.has_kv[il]:
            continue  # reuses an earlier layer's cache
        size = swa_size if d.swa[il] else kv_size
        k = _row_bytes(type_k, d.heads_kv[il] * d.head_k[il] * size)
        v = 0 if d.mla else _row_bytes(type_v, (d.heads_kv[il] * d.head_v[il] if flash else v_max) * size)
        device.kv += k + v
        if not d.swa[il]:
            estimate.kv_per_token += (k + v) // size
    if any(d.recurrent):
        notes.append("recurrent layers: their state is counted with the KV cache")
    output_on_gpu = ngl > 0
    host_output = d.n_vocab * 4  # one sequence: logits for one token, in host memory
    cpu.output = host_output
    cpu_layers = i_gpu_start > 0 or not ngl
    gpu_layers = ngl > 1
    cpu.compute = _compute(d, n_tokens=n_tokens, n_outputs=n_tokens, kv_size=kv_size, flash=flash,
                           layers=cpu_layers, output=not output_on_gpu)
    if ngl:
        gpu_dev.compute = _compute(d, n_tokens=n_tokens, n_outputs=n_tokens, kv_size=kv_size, flash=flash,
                                   layers=gpu_layers, output=output_on_gpu)
        # With layers on the GPU the graph's inputs live in a pinned host buffer (CUDA_Host compute): the
        # KQ mask, the embedding lookup's result and its copy, and without flash attention a further f16
        # activation. Fitted to the CUDA buffers logged on an H200 (benchmarks/gpu_check.sh), within 0.2 MiB.
        host_inputs = (kv_size * n_tokens * (2 if flash else 4) + 2 * d.n_embd * n_tokens * 4
                       + (0 if flash else d.n_embd * n_tokens * 2))
        cpu.compute = max(cpu.compute, host_inputs)
    if header.architecture not in _KNOWN_GRAPH:
        notes.append(f"{header.architecture}: compute buffer estimated with a generic transformer graph")
    return estimate


_KNOWN_GRAPH = {"llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3", "phi3", "qwen2moe",
                "qwen3moe", "mixtral", "granite", "olmo", "olmo2", "stablelm", "starcoder2", "smollm3", "exaone"}


def _budgets(hardware: HardwareInfo, notes: list[str]) -> tuple[int, int, str, bool]:
    """(RAM budget, VRAM budget, GPU name, unified) after the reserves; VRAM 0 means no usable GPU."""
    ram = hardware.ram_available - RAM_RESERVE
    if not hardware.gpus:
        return ram, 0, "", False
    gpu = hardware.gpus[0]
    build = hardware.llama
    if build is not None and not build.error and not build.gpu_devices:
        notes.append(f"{gpu.name} is present but this llama.cpp build has no GPU backend: CPU only")
        return ram, 0, "", False
    free = gpu.memory_free or gpu.memory_total
    if build is not None and build.gpu_devices:
        free = int(build.gpu_devices[0].get("memory_free") or free)  # llama.cpp's own view of the device
    if len(hardware.gpus) > 1:
        notes.append(f"{len(hardware.gpus)} GPUs: the estimate places layers on the first one only")
    return ram, max(free - GPU_RESERVE, 0), gpu.name, gpu.unified_memory


def fit_verdict(header: GGUFHeader, hardware: HardwareInfo, *, n_ctx: int | None = None, type_k: str = "f16",
                type_v: str = "f16", n_batch: int = 2048, n_ubatch: int = 512, flash_attn: FlashAttn = "auto",
                swa_full: bool = False) -> FitVerdict:
    """Fully on the GPU, partial offload, CPU only or does not fit; with the suggested offload and largest context."""
    notes: list[str] = []
    check_loadable(header)
    ram, vram, gpu_name, unified = _budgets(hardware, notes)
    train_ctx = header.context_length or 131072
    ctx = n_ctx or min(train_ctx, 4096)
    n_layer = header.block_count

    def est(ngl: int, c: int) -> MemoryEstimate:
        return estimate_memory(header, n_ctx=c, type_k=type_k, type_v=type_v, n_batch=n_batch, n_ubatch=n_ubatch,
                               n_gpu_layers=ngl, flash_attn=flash_attn, swa_full=swa_full, gpu=vram > 0,
                               cpu_flags=hardware.cpu.flags)

    def fits(e: MemoryEstimate) -> bool:
        host, dev = e.device("CPU").total, e.device("GPU").total
        if unified:
            return host + dev <= ram and dev <= vram
        return host <= ram and dev <= vram

    options = list(range(n_layer + 1, -1, -1)) if vram > 0 else [0]
    chosen = next((ngl for ngl in options if fits(est(ngl, ctx))), None)
    if chosen is None:  # nothing fits at this context; find the offload that fits the most context
        chosen = next((ngl for ngl in options if fits(est(ngl, 256))), options[-1])
    limit = max(train_ctx, ctx)
    lo, hi = 0, -(-limit // 256)  # rounded up: a 128-token model still gets its one 256-cell step
    while lo < hi:  # fits() only gets harder as the context grows, so bisect in steps of 256
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(est(chosen, mid * 256)) else (lo, mid - 1)
    # llama.cpp pads n_ctx to 256 cells, so whatever fits at the padded size fits at `limit` below it too.
    max_ctx = min(lo * 256, limit)
    estimate = est(chosen, ctx)
    host, dev = estimate.device("CPU").total, estimate.device("GPU").total
    headroom_ram = ram - host - (dev if unified else 0)
    headroom_vram = vram - dev if vram else 0
    notes += estimate.notes + [f"unknown: {u}" for u in estimate.unknown]
    at = f"at {ctx} tokens of context"
    if not fits(estimate):
        verdict: Verdict = "no_fit"
        summary = (f"Does not fit {at}: needs {fmt_bytes(host)} RAM{f' and {fmt_bytes(dev)} VRAM' if dev else ''}, "
                   f"{fmt_bytes(ram)} RAM{f' and {fmt_bytes(vram)} VRAM' if vram else ''} usable"
                   + (f"; up to {max_ctx} tokens would fit with n_gpu_layers {chosen}." if max_ctx else "."))
    elif chosen == n_layer + 1 and vram:
        verdict = "gpu"
        summary = f"Runs fully on the GPU ({gpu_name}) {at}: {fmt_bytes(dev)} of {fmt_bytes(vram)} usable VRAM."
    elif chosen > 0:
        verdict = "partial"
        summary = (f"Partial offload {at}: {chosen} of {n_layer + 1} layers on {gpu_name} ({fmt_bytes(dev)} VRAM), "
                   f"the rest on the CPU ({fmt_bytes(host)} RAM).")
    else:
        verdict = "cpu"
        summary = f"Runs on the CPU only {at}: {fmt_bytes(host)} of {fmt_bytes(ram)} usable RAM."
    if verdict != "no_fit":
        summary += f" Largest context that fits: {max_ctx} tokens."
    return FitVerdict(verdict=verdict, summary=summary, n_ctx=ctx, n_gpu_layers=chosen, max_ctx=max_ctx,
                      headroom_ram=headroom_ram, headroom_vram=headroom_vram, estimate=estimate, notes=notes)


def estimate_for_job(job: BenchJob, test: BenchTest, *, header: GGUFHeader | None = None,
                     gpu: bool | None = None, cpu_flags: Iterable[str] | None = None) -> dict[str, int]:
    """The estimate for one benchmark run, under the names of BenchResult's measured buffer fields (bytes).

    `gpu=None` asks the installed llama.cpp build (once per process, in a child) whether it has a GPU device;
    `cpu_flags=None` reads this machine's CPU features (they decide which weights ggml repacks).
    """
    from models.machine.hardware import llama_build, probe_cpu

    if header is None:
        header = read_model_header(job.model_path)
    if gpu is None:
        gpu = bool(llama_build().gpu_devices)
    if cpu_flags is None:
        cpu_flags = probe_cpu([]).flags
    p = job.params
    e = estimate_memory(header, n_ctx=max(test.n_ctx, 1), type_k=p.type_k, type_v=p.type_v, n_batch=p.n_batch,
                        n_ubatch=p.n_ubatch, n_gpu_layers=p.n_gpu_layers, flash_attn=p.flash_attn,
                        swa_full=False, gpu=gpu, use_mmap=p.use_mmap is not False, cpu_flags=cpu_flags)
    return {"buf_model": e.weights, "buf_kv": e.kv, "buf_compute": e.compute, "buf_output": e.output,
            "total": e.total}
