"""Small GGUF models of chosen shapes, written with the `gguf` package (test and benchmark helper, never the app)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shape:
    """A model shape; head_dim None means n_embd / n_head (llama.cpp's default)."""

    arch: str = "llama"
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 8
    n_head_kv: int = 2
    head_dim: int | None = None
    n_ff: int = 512
    n_vocab: int = 512
    ctx_train: int = 32768
    sliding_window: int = 0
    n_expert: int = 0
    n_expert_used: int = 0
    tied_output: bool = False
    head_count_kv_per_layer: tuple[int, ...] | None = None

    @property
    def label(self) -> str:
        hd = self.head_dim or self.n_embd // self.n_head
        extra = f" swa{self.sliding_window}" if self.sliding_window else ""
        extra += f" moe{self.n_expert}/{self.n_expert_used}" if self.n_expert else ""
        return f"{self.arch} L{self.n_layer} E{self.n_embd} H{self.n_head}/{self.n_head_kv} hd{hd}{extra}"


def starter_tokenizer(starter: Path) -> dict[str, Any]:
    """The starter model's tokenizer metadata (a trusted file, so the `gguf` reader is fine here)."""
    import gguf

    reader = gguf.GGUFReader(starter)
    out: dict[str, Any] = {}
    for key, fld in reader.fields.items():
        if key.startswith("tokenizer.") and key != "tokenizer.chat_template":
            out[key] = (fld.contents(), fld.types)
    return out


def _add_tokenizer(writer: Any, shape: Shape, tokenizer: dict[str, Any] | None) -> int:
    import gguf

    if tokenizer is None:
        tokens = [f"<t{i}>" for i in range(shape.n_vocab)]
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores([0.0] * len(tokens))
        writer.add_token_types([1] * len(tokens))
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        return len(tokens)
    n_vocab = 0
    for key, (value, types) in tokenizer.items():
        if types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, value, types[0], sub_type=types[-1])
            if key == "tokenizer.ggml.tokens":
                n_vocab = len(value)
        else:
            writer.add_key_value(key, value, types[0])
    return n_vocab


def write_model(path: Path, shape: Shape, *, tokenizer: dict[str, Any] | None = None, seed: int = 0,
                weight_type: str = "f16") -> Path:
    """A loadable random-weight model: llama (dense or MoE) or gemma3 tensors, with real tensor data.

    weight_type: "f16", "f32", or "q4_0" (matrices quantized; norms stay f32).
    """
    import gguf

    rng = np.random.default_rng(seed)
    dtype = np.float16 if weight_type == "f16" else np.float32
    writer = gguf.GGUFWriter(str(path), shape.arch)
    hd = shape.head_dim or shape.n_embd // shape.n_head
    writer.add_name(f"test {shape.label}")
    writer.add_context_length(shape.ctx_train)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(list(shape.head_count_kv_per_layer) if shape.head_count_kv_per_layer
                             else shape.n_head_kv)
    writer.add_key_length(hd)
    writer.add_value_length(hd)
    writer.add_rope_dimension_count(hd)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type({"f32": 0, "f16": 1, "q4_0": 2}[weight_type])
    if shape.sliding_window:
        writer.add_sliding_window(shape.sliding_window)
    if shape.n_expert:
        writer.add_expert_count(shape.n_expert)
        writer.add_expert_used_count(shape.n_expert_used)
    n_vocab = _add_tokenizer(writer, shape, tokenizer)

    def w(name: str, *dims: int) -> None:
        # numpy order is the reverse of ggml's ne[]: (rows, row length).
        data = rng.standard_normal(tuple(reversed(dims)), dtype=np.float32) * 0.02
        if weight_type == "q4_0" and dims[0] % 32 == 0:
            qtype = gguf.GGMLQuantizationType.Q4_0
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, data.astype(dtype))

    def norm(name: str, n: int) -> None:
        writer.add_tensor(name, np.ones(n, dtype=np.float32))

    w("token_embd.weight", shape.n_embd, n_vocab)
    for il in range(shape.n_layer):
        n_kv = shape.head_count_kv_per_layer[il] if shape.head_count_kv_per_layer else shape.n_head_kv
        p = f"blk.{il}."
        norm(p + "attn_norm.weight", shape.n_embd)
        w(p + "attn_q.weight", shape.n_embd, shape.n_head * hd)
        w(p + "attn_k.weight", shape.n_embd, n_kv * hd)
        w(p + "attn_v.weight", shape.n_embd, n_kv * hd)
        w(p + "attn_output.weight", shape.n_head * hd, shape.n_embd)
        norm(p + "ffn_norm.weight", shape.n_embd)
        if shape.arch == "gemma3":
            norm(p + "attn_q_norm.weight", hd)
            norm(p + "attn_k_norm.weight", hd)
            norm(p + "post_attention_norm.weight", shape.n_embd)
            norm(p + "post_ffw_norm.weight", shape.n_embd)
        if shape.n_expert:
            w(p + "ffn_gate_inp.weight", shape.n_embd, shape.n_expert)
            w(p + "ffn_gate_exps.weight", shape.n_embd, shape.n_ff, shape.n_expert)
            w(p + "ffn_up_exps.weight", shape.n_embd, shape.n_ff, shape.n_expert)
            w(p + "ffn_down_exps.weight", shape.n_ff, shape.n_embd, shape.n_expert)
        else:
            w(p + "ffn_gate.weight", shape.n_embd, shape.n_ff)
            w(p + "ffn_up.weight", shape.n_embd, shape.n_ff)
            w(p + "ffn_down.weight", shape.n_ff, shape.n_embd)
    norm("output_norm.weight", shape.n_embd)
    if not shape.tied_output and shape.arch != "gemma3":
        w("output.weight", shape.n_embd, n_vocab)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
