"""What llama.cpp sizes its buffers from: a GGUF header's hyperparameters and where each tensor is placed."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from models.errors import ModelFileError
from models.gguf.reader import ArraySummary, GGUFHeader, TensorInfo

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class _Swa:
    """How one architecture's load_arch_hparams (llama.cpp src/models/<arch>.cpp) sets its sliding-window layers.

    `pattern` is load_swa_pattern's default n_pattern (a file's sliding_window_pattern overrides it; 0: only the
    file's per-layer array says); `when`: "always", "key" (only with a sliding_window > 0 in the file), "llama4"
    (unless the file says a window of 0), "exaone4" (the 64-layer model only).
    """

    pattern: int
    dense_first: bool = False
    when: str = "always"
    default_window: int = 0  # n_swa when the file has none
    forced_window: int = 0  # n_swa whatever the file says


# Architectures whose SWA layout llama.cpp sets in code; every other architecture is all dense (is_swa_impl
# starts all false), whatever sliding_window its file carries.
_SWA: dict[str, _Swa] = {
    "gemma2": _Swa(2, default_window=4096), "gemma3": _Swa(6, when="key"), "gemma3n": _Swa(5),
    "gemma-embedding": _Swa(6), "cohere2": _Swa(4), "cohere2moe": _Swa(4, dense_first=True),
    "llama4": _Swa(4, when="llama4", forced_window=8192), "exaone4": _Swa(4, when="exaone4", default_window=4096),
    "exaone-moe": _Swa(4, default_window=128), "olmo2": _Swa(4, when="key"), "gpt-oss": _Swa(2),
    "smallthinker": _Swa(4, dense_first=True, when="key", forced_window=4096),
    "modern-bert": _Swa(3, dense_first=True, when="key"), "plamo3": _Swa(8, when="key"),
    "afmoe": _Swa(4, when="key"), "laguna": _Swa(4, dense_first=True, when="key"), "mellum": _Swa(4, when="key"),
    "muse-glimmer": _Swa(4),
    # These read the per-layer array from the file and nothing else (llama.cpp refuses the file without it).
    "gemma4": _Swa(0), "dots3note": _Swa(0), "step35": _Swa(0), "spark2_5": _Swa(0), "granite_swa": _Swa(0),
    "mimo2": _Swa(0), "maple": _Swa(0),
}
_RECURRENT = ("mamba", "mamba2", "rwkv6", "rwkv7", "rwkv6qwen2", "arwkv7")

@dataclass
class Dims:
    n_layer: int
    n_embd: int
    n_vocab: int
    n_ff: int
    ffn_width: int  # activations per token in the FFN: n_ff, or expert width x experts used for MoE
    heads: list[int]
    heads_kv: list[int]
    head_k: list[int]
    head_v: list[int]
    swa: list[bool]
    n_swa: int
    recurrent: list[int]  # bytes of recurrent state per layer (0: attention layer)
    has_kv: list[bool] = field(default_factory=list)  # False: the layer reuses an earlier layer's cache
    mla: bool = False  # MLA (DeepSeek-V2/V3, Kimi-K2): the cache keeps K only; V is read out of it


def _arch_int(header: GGUFHeader, key: str, default: int = 0) -> int:
    value = header.arch_value(key, default)
    if isinstance(value, (list, ArraySummary)):
        items = value.head if isinstance(value, ArraySummary) else value
        return max((int(v) for v in items), default=default)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _swa_layers(header: GGUFHeader, n_layer: int) -> tuple[list[bool], int]:
    """(which layers use the sliding window, the window) as llama.cpp's hparams set them for this file."""
    dense = [False] * n_layer, 0
    rule = _SWA.get(header.architecture)
    window = header.sliding_window
    if rule is None:
        return dense  # llama.cpp's default: every layer full, the window unused
    if rule.when == "key" and window <= 0:
        return dense
    if rule.when == "llama4" and window == 0 and "attention.sliding_window" in _keys(header):
        return dense
    if rule.when == "exaone4" and n_layer != 64:
        return dense
    window = rule.forced_window or window or rule.default_window
    pattern = header.arch_value("attention.sliding_window_pattern")
    if isinstance(pattern, list):
        if len(pattern) != n_layer:
            raise ModelFileError(f"{header.architecture}.attention.sliding_window_pattern has {len(pattern)} "
                                 f"values for {n_layer} layers.")
        return [bool(v) for v in pattern], window
    n_pattern = rule.pattern
    if rule.pattern == 0:
        return dense  # the per-layer array is missing: llama.cpp will refuse the file; estimate it dense
    if isinstance(pattern, int) and not isinstance(pattern, bool):
        n_pattern = pattern
    if n_pattern < 0:
        raise ModelFileError(f"{header.architecture}.attention.sliding_window_pattern is negative ({n_pattern}).")
    # llama_hparams::set_swa_pattern: n_pattern 0 makes every layer SWA, 1 none.
    if rule.dense_first:
        return [n_pattern == 0 or il % n_pattern != 0 for il in range(n_layer)], window
    return [n_pattern == 0 or il % n_pattern < n_pattern - 1 for il in range(n_layer)], window


def _keys(header: GGUFHeader) -> set[str]:
    prefix = f"{header.architecture}."
    return {key[len(prefix):] for key in header.metadata if key.startswith(prefix)}


def _kv_layers(header: GGUFHeader, n_layer: int) -> list[bool]:
    """Layers with a cache of their own: gemma3n and gemma4 reuse the last full/SWA layer's cache beyond
    n_layer_kv_from_start (llama_hparams::has_kv and the reuse callback in llama_model::create_memory)."""
    if header.architecture == "gemma3n":
        start = 20
    elif header.architecture == "gemma4":
        start = n_layer - _arch_int(header, "attention.shared_kv_layers")
    else:
        return [True] * n_layer
    if start < 2 and n_layer > start:
        raise ModelFileError(f"{header.architecture}: {n_layer - start} of {n_layer} layers share their KV cache; "
                             "llama.cpp needs at least two layers with a cache of their own.")
    return [il < start for il in range(n_layer)]


def _tensor_dim(header: GGUFHeader, name: str, axis: int) -> int:
    tensor = next((t for t in header.tensors if t.name == name), None)
    return tensor.shape[axis] if tensor is not None and len(tensor.shape) > axis else 0


def model_dims(header: GGUFHeader, unknown: list[str]) -> Dims | None:
    """The hyperparameters llama.cpp sizes its buffers with; None when the attention shape is unknown."""
    n_layer, n_embd = header.block_count, header.embedding_length
    n_vocab = header.vocab_size or _tensor_dim(header, "token_embd.weight", 1)
    n_ff = _arch_int(header, "feed_forward_length") or _tensor_dim(header, "blk.0.ffn_up.weight", 1)
    if not header.architecture:
        unknown.append("architecture (general.architecture missing): only the weights are estimated")
        return None
    if n_layer <= 0 or n_embd <= 0:
        unknown.append(f"{header.architecture}: block_count/embedding_length missing; only the weights are estimated")
        return None
    if n_layer > 100_000 or n_embd > 1 << 24:
        raise ModelFileError(f"Impossible dimensions: {n_layer} layers of width {n_embd}.")
    recurrent = [0] * n_layer
    heads, heads_kv = header.head_count_per_layer, header.head_count_kv_per_layer
    if header.architecture in _RECURRENT or (heads_kv and 0 in heads_kv and _arch_int(header, "ssm.state_size")):
        d_state, d_inner = _arch_int(header, "ssm.state_size"), _arch_int(header, "ssm.inner_size")
        d_conv, groups = _arch_int(header, "ssm.conv_kernel"), _arch_int(header, "ssm.group_count")
        state = (max(d_conv - 1, 0) * (d_inner + 2 * groups * d_state) + d_state * d_inner) * 4
        if header.architecture.startswith(("rwkv", "arwkv")):
            head = _arch_int(header, "wkv.head_size")
            state = (_arch_int(header, "token_shift_count", 2) * n_embd + n_embd * head) * 4
        recurrent = [state if (not heads_kv or heads_kv[il] == 0) else 0 for il in range(n_layer)]
        if header.architecture in _RECURRENT:
            heads, heads_kv = [0] * n_layer, [0] * n_layer
    if not heads:
        unknown.append(f"{header.architecture}: attention.head_count missing; KV cache and compute not estimated")
        return None
    if any(h <= 0 for h, r in zip(heads, recurrent) if not r) and header.architecture not in _RECURRENT:
        raise ModelFileError(f"Impossible dimensions: a layer has {min(heads)} attention heads.")
    for il, (h, hkv) in enumerate(zip(heads, heads_kv)):
        if hkv < 0 or hkv > h or (hkv and h % hkv):
            raise ModelFileError(f"Impossible dimensions: layer {il} has {h} heads and {hkv} KV heads.")
    k_len = header.key_length or (n_embd // max(heads) if max(heads) else 0)
    v_len = header.value_length or (n_embd // max(heads) if max(heads) else 0)
    swa, n_swa = _swa_layers(header, n_layer)
    # llama_hparams::is_mla: both MLA head sizes set. The cache then holds one latent K row per token
    # (head_count_kv x key_length, i.e. kv_lora_rank + rope dims) and no V (has_v = !is_mla).
    mla = _arch_int(header, "attention.key_length_mla") > 0 and _arch_int(header, "attention.value_length_mla") > 0
    k_swa = _arch_int(header, "attention.key_length_swa", k_len)
    v_swa = _arch_int(header, "attention.value_length_swa", v_len)
    head_k = [k_swa if swa[il] else k_len for il in range(n_layer)]
    head_v = [v_swa if swa[il] else v_len for il in range(n_layer)]
    if any(heads_kv[il] and (head_k[il] <= 0 or (head_v[il] <= 0 and not mla)) for il in range(n_layer)):
        raise ModelFileError(f"Impossible dimensions: head size {k_len}/{v_len} for width {n_embd}.")
    if n_vocab <= 0:
        unknown.append("vocabulary size: output buffer not estimated")
    ffn_width = n_ff
    if header.expert_count and header.expert_used_count:
        ffn_width = (_arch_int(header, "expert_feed_forward_length") or n_ff) * header.expert_used_count
    return Dims(n_layer, n_embd, n_vocab, n_ff, ffn_width, heads, heads_kv, head_k, head_v, swa, n_swa,
                recurrent, has_kv=_kv_layers(header, n_layer), mla=mla)


_LAYER = re.compile(r"^blk\.(\d+)\.")


@dataclass
class Placement:
    """Weight bytes per buffer as llama.cpp logs them."""

    cpu: int = 0  # CPU_Mapped (the file span of the CPU tensors with mmap) or CPU, plus CPU_REPACK
    gpu: int = 0
    repacked: int = 0  # part of `cpu` copied into CPU_REPACK (its file pages stay mapped as well)
    experts: int = 0


def _repacked(tensor: TensorInfo, flags: frozenset[str]) -> bool:
    """Whether ggml's CPU backend copies this weight into an interleaved layout (x86 AVX2/AVX512, ARM dot/i8mm)."""
    if len(tensor.shape) < 2 or tensor.name.startswith("token_embd"):
        return False  # only matrix-multiplied weights; the embedding is read by row lookup
    rows, kind = tensor.shape[1], tensor.type_name
    if "AVX2" in flags and kind in ("Q4_0", "Q4_K", "IQ4_NL", "MXFP4"):
        return rows % 8 == 0
    if "AVX512" in flags and kind == "Q2_K":
        return rows % 8 == 0
    if flags & {"DOTPROD", "MATMUL_INT8"} and "NEON" in flags:
        if kind in ("Q4_0", "IQ4_NL", "MXFP4", "Q8_0"):
            return rows % 4 == 0
        return kind in ("Q4_K", "Q5_K", "Q6_K") and rows % 8 == 0
    return False


def place_weights(header: GGUFHeader, i_gpu_start: int, gpu: bool, *, use_mmap: bool = True,
                  cpu_flags: Iterable[str] = ()) -> Placement:
    """Weights per device with llama.cpp's placement: the input layer on the CPU, layers offloaded from the end."""
    out = Placement()
    flags = frozenset(cpu_flags)
    n_layer = header.block_count
    names = {t.name for t in header.tensors}
    spans: dict[int, tuple[int, int]] = {}  # per file: llama.cpp maps each shard of a split model on its own
    for tensor in header.tensors:
        match = _LAYER.match(tensor.name)
        if "_exps" in tensor.name:
            out.experts += tensor.n_bytes
        if tensor.name.startswith(("token_embd", "position_embd", "token_types")):
            layer = -1  # the input layer always stays on the CPU
        else:
            layer = int(match.group(1)) if match else n_layer
        if gpu and layer >= i_gpu_start and layer >= 0:
            out.gpu += tensor.n_bytes
        elif _repacked(tensor, flags):
            out.repacked += tensor.n_bytes
        elif use_mmap:  # one mapping per file covers the first to the last CPU tensor in file order
            start, end = spans.get(tensor.shard, (tensor.offset, 0))
            spans[tensor.shard] = (min(start, tensor.offset), max(end, tensor.offset + tensor.n_bytes))
        else:
            out.cpu += tensor.n_bytes
        if tensor.name == "token_embd.weight" and "output.weight" not in names and gpu and n_layer >= i_gpu_start:
            out.gpu += tensor.n_bytes  # tied output: llama.cpp loads a second copy on the output device
    out.cpu += sum(end - start for start, end in spans.values()) + out.repacked
    return out
