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


def _writer(path: Path, arch: str, name: str, *, n_layer: int, n_embd: int, n_ff: int, n_head: int, n_head_kv: int,
            ctx_train: int) -> Any:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_context_length(ctx_train)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type(1)
    return writer


def _tensors(writer: Any, seed: int) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)

    def w(name: str, *dims: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(tuple(reversed(dims)), dtype=np.float32) * 0.02)
                          .astype(np.float16))

    def norm(name: str, n: int) -> None:
        writer.add_tensor(name, np.ones(n, dtype=np.float32))

    return w, norm


def _finish(writer: Any, path: Path) -> Path:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@dataclass(frozen=True)
class MlaShape:
    """A DeepSeek-V2-style MLA model as convert_hf_to_gguf writes one: MQA over the compressed latent.

    key_length = kv_lora_rank + rope dims (what the cache stores per token), value_length = kv_lora_rank;
    key_length_mla / value_length_mla are the decompressed head sizes. All layers dense (no experts).
    """

    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    kv_lora_rank: int = 128
    qk_rope: int = 32
    qk_nope: int = 64
    v_head: int = 64
    n_ff: int = 512
    n_vocab: int = 512
    ctx_train: int = 32768

    @property
    def label(self) -> str:
        return f"deepseek2 MLA L{self.n_layer} E{self.n_embd} H{self.n_head} kv_lora{self.kv_lora_rank}"


def write_mla_model(path: Path, shape: MlaShape, *, tokenizer: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """A loadable random-weight deepseek2 model with MLA (attn_k_b / attn_v_b split, as current converters write)."""
    k_mla = shape.qk_nope + shape.qk_rope
    writer = _writer(path, "deepseek2", f"test {shape.label}", n_layer=shape.n_layer, n_embd=shape.n_embd,
                     n_ff=shape.n_ff, n_head=shape.n_head, n_head_kv=1, ctx_train=shape.ctx_train)
    writer.add_key_length(shape.kv_lora_rank + shape.qk_rope)
    writer.add_value_length(shape.kv_lora_rank)
    writer.add_uint32("deepseek2.attention.key_length_mla", k_mla)
    writer.add_uint32("deepseek2.attention.value_length_mla", shape.v_head)
    writer.add_rope_dimension_count(shape.qk_rope)
    writer.add_uint32("deepseek2.attention.q_lora_rank", 0)
    writer.add_uint32("deepseek2.attention.kv_lora_rank", shape.kv_lora_rank)
    writer.add_uint32("deepseek2.leading_dense_block_count", shape.n_layer)
    writer.add_uint32("deepseek2.expert_feed_forward_length", shape.n_ff)
    writer.add_uint32("deepseek2.expert_shared_count", 0)
    n_vocab = _add_tokenizer(writer, Shape(n_vocab=shape.n_vocab), tokenizer)
    w, norm = _tensors(writer, seed)
    w("token_embd.weight", shape.n_embd, n_vocab)
    for il in range(shape.n_layer):
        p = f"blk.{il}."
        norm(p + "attn_norm.weight", shape.n_embd)
        norm(p + "attn_kv_a_norm.weight", shape.kv_lora_rank)
        w(p + "attn_q.weight", shape.n_embd, shape.n_head * k_mla)
        w(p + "attn_kv_a_mqa.weight", shape.n_embd, shape.kv_lora_rank + shape.qk_rope)
        w(p + "attn_k_b.weight", shape.qk_nope, shape.kv_lora_rank, shape.n_head)
        w(p + "attn_v_b.weight", shape.kv_lora_rank, shape.v_head, shape.n_head)
        w(p + "attn_output.weight", shape.n_head * shape.v_head, shape.n_embd)
        norm(p + "ffn_norm.weight", shape.n_embd)
        w(p + "ffn_gate.weight", shape.n_embd, shape.n_ff)
        w(p + "ffn_up.weight", shape.n_embd, shape.n_ff)
        w(p + "ffn_down.weight", shape.n_ff, shape.n_embd)
    norm("output_norm.weight", shape.n_embd)
    w("output.weight", shape.n_embd, n_vocab)
    return _finish(writer, path)


@dataclass(frozen=True)
class Gemma4Shape:
    """A gemma4 model: SWA layers from the file's per-layer pattern, the last `shared_kv` layers reusing a cache."""

    swa_pattern: tuple[bool, ...] = (True, False, True, False, True, False)
    shared_kv: int = 2
    n_embd: int = 256
    n_head: int = 4
    n_head_kv: int = 1
    head_dim: int = 64
    head_dim_swa: int = 32
    n_ff: int = 512
    n_vocab: int = 512
    sliding_window: int = 256
    ctx_train: int = 32768

    @property
    def label(self) -> str:
        return (f"gemma4 L{len(self.swa_pattern)} swa{self.sliding_window} "
                f"shared-kv{self.shared_kv} hd{self.head_dim}/{self.head_dim_swa}")


def write_gemma4_model(path: Path, shape: Gemma4Shape, *, tokenizer: dict[str, Any] | None = None,
                       seed: int = 0) -> Path:
    """A loadable random-weight gemma4 model without per-layer embeddings or experts."""
    n_layer = len(shape.swa_pattern)
    writer = _writer(path, "gemma4", f"test {shape.label}", n_layer=n_layer, n_embd=shape.n_embd, n_ff=shape.n_ff,
                     n_head=shape.n_head, n_head_kv=shape.n_head_kv, ctx_train=shape.ctx_train)
    writer.add_key_length(shape.head_dim)
    writer.add_value_length(shape.head_dim)
    writer.add_uint32("gemma4.attention.key_length_swa", shape.head_dim_swa)
    writer.add_uint32("gemma4.attention.value_length_swa", shape.head_dim_swa)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_sliding_window(shape.sliding_window)
    writer.add_array("gemma4.attention.sliding_window_pattern", list(shape.swa_pattern))
    writer.add_uint32("gemma4.attention.shared_kv_layers", shape.shared_kv)
    writer.add_uint32("gemma4.embedding_length_per_layer_input", 0)
    n_vocab = _add_tokenizer(writer, Shape(n_vocab=shape.n_vocab), tokenizer)
    w, norm = _tensors(writer, seed)
    w("token_embd.weight", shape.n_embd, n_vocab)
    norm("output_norm.weight", shape.n_embd)
    norm("rope_freqs.weight", shape.head_dim // 2)
    for il, swa in enumerate(shape.swa_pattern):
        hd = shape.head_dim_swa if swa else shape.head_dim
        p = f"blk.{il}."
        norm(p + "attn_norm.weight", shape.n_embd)
        w(p + "attn_q.weight", shape.n_embd, shape.n_head * hd)
        w(p + "attn_k.weight", shape.n_embd, shape.n_head_kv * hd)
        w(p + "attn_v.weight", shape.n_embd, shape.n_head_kv * hd)
        w(p + "attn_output.weight", shape.n_head * hd, shape.n_embd)
        norm(p + "attn_q_norm.weight", hd)
        norm(p + "attn_k_norm.weight", hd)
        norm(p + "post_attention_norm.weight", shape.n_embd)
        norm(p + "ffn_norm.weight", shape.n_embd)
        w(p + "ffn_gate.weight", shape.n_embd, shape.n_ff)
        w(p + "ffn_up.weight", shape.n_embd, shape.n_ff)
        w(p + "ffn_down.weight", shape.n_ff, shape.n_embd)
        norm(p + "post_ffw_norm.weight", shape.n_embd)
    return _finish(writer, path)


def split_model(model: Path, out_dir: Path, n_split: int) -> list[Path]:
    """The model cut into `n_split` shards as llama.cpp's gguf-split does: metadata in the first shard, split.no /
    split.count / split.tensors.count in each, tensors dealt out in file order, NAME-0000i-of-0000N.gguf names."""
    import gguf

    reader = gguf.GGUFReader(model)
    tensors = list(reader.tensors)
    per = -(-len(tensors) // n_split)
    stem = model.name.removesuffix(".gguf")
    paths = []
    for index in range(n_split):
        path = out_dir / f"{stem}-{index + 1:05d}-of-{n_split:05d}.gguf"
        arch = str(reader.fields["general.architecture"].contents())
        writer = gguf.GGUFWriter(str(path), arch)
        if index == 0:
            for key, fld in reader.fields.items():
                if key.startswith("GGUF.") or key == "general.architecture":
                    continue
                if fld.types[0] == gguf.GGUFValueType.ARRAY:
                    writer.add_key_value(key, fld.contents(), fld.types[0], sub_type=fld.types[-1])
                else:
                    writer.add_key_value(key, fld.contents(), fld.types[0])
        writer.add_uint16("split.no", index)
        writer.add_uint16("split.count", n_split)
        writer.add_int32("split.tensors.count", len(tensors))
        for tensor in tensors[index * per:(index + 1) * per]:
            writer.add_tensor(tensor.name, tensor.data, raw_shape=list(reversed([int(d) for d in tensor.shape])),
                              raw_dtype=tensor.tensor_type)
        paths.append(_finish(writer, path))
    return paths
