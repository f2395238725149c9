"""What llama.cpp sizes its buffers from: a GGUF header's hyperparameters and where each tensor is placed."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from models.errors import ModelFileError
from models.gguf.reader import ArraySummary, GGUFHeader, TensorInfo

log = logging.getLogger(__name__)

# Where llama.cpp gives an architecture a fixed sliding-window layer pattern (every Nth layer is full).
_SWA_PATTERNS: dict[str, tuple[int, bool]] = {
    "gemma2": (2, False), "gemma3": (6, False), "gemma3n": (5, False), "gemma-embedding": (6, False),
    "cohere2": (4, False), "llama4": (4, False), "exaone4": (4, False), "olmo2": (4, False),
    "openai-moe": (2, False), "gpt-oss": (2, False), "smallthinker": (4, True), "modern-bert": (3, True),
    "plamo3": (8, False), "afmoe": (4, False), "phi3": (1, False), "exaone-moe": (4, False),
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


def _arch_int(header: GGUFHeader, key: str, default: int = 0) -> int:
    value = header.arch_value(key, default)
    if isinstance(value, (list, ArraySummary)):
        items = value.head if isinstance(value, ArraySummary) else value
        return max((int(v) for v in items), default=default)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _swa_layers(header: GGUFHeader, n_layer: int) -> list[bool]:
    if header.sliding_window <= 0:
        return [False] * n_layer
    pattern = header.arch_value("attention.sliding_window_pattern")
    if isinstance(pattern, list) and len(pattern) == n_layer:
        return [bool(v) for v in pattern]
    n_pattern, dense_first = _SWA_PATTERNS.get(header.architecture, (0, False))
    if isinstance(pattern, int) and not isinstance(pattern, bool):
        n_pattern = pattern
    if dense_first:
        return [n_pattern == 0 or il % n_pattern != 0 for il in range(n_layer)]
    return [n_pattern == 0 or il % n_pattern < n_pattern - 1 for il in range(n_layer)]


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
    v_len = header.value_length or k_len
    swa = _swa_layers(header, n_layer)
    k_swa = _arch_int(header, "attention.key_length_swa", k_len)
    v_swa = _arch_int(header, "attention.value_length_swa", v_len)
    head_k = [k_swa if swa[il] else k_len for il in range(n_layer)]
    head_v = [v_swa if swa[il] else v_len for il in range(n_layer)]
    if any(heads_kv[il] and (head_k[il] <= 0 or head_v[il] <= 0) for il in range(n_layer)):
        raise ModelFileError(f"Impossible dimensions: head size {k_len}/{v_len} for width {n_embd}.")
    if n_vocab <= 0:
        unknown.append("vocabulary size: output buffer not estimated")
    ffn_width = n_ff
    if header.expert_count and header.expert_used_count:
        ffn_width = (_arch_int(header, "expert_feed_forward_length") or n_ff) * header.expert_used_count
    return Dims(n_layer, n_embd, n_vocab, n_ff, ffn_width, heads, heads_kv, head_k, head_v, swa, header.sliding_window,
                 recurrent)


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
    span_start, span_end = None, 0
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
        elif use_mmap:  # one mapping covers the first to the last CPU tensor in file order
            span_start = tensor.offset if span_start is None else min(span_start, tensor.offset)
            span_end = max(span_end, tensor.offset + tensor.n_bytes)
        else:
            out.cpu += tensor.n_bytes
        if tensor.name == "token_embd.weight" and "output.weight" not in names and gpu and n_layer >= i_gpu_start:
            out.gpu += tensor.n_bytes  # tied output: llama.cpp loads a second copy on the output device
    out.cpu += (span_end - span_start if span_start is not None else 0) + out.repacked
    return out
