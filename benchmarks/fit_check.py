"""Estimate vs measured: models.fit.estimate's buffer estimate against the buffer sizes llama.cpp logs, per model shape.

Usage: .venv/bin/python benchmarks/fit_check.py [--quick | --only-new] [--ngl N] [--json OUT]

For the starter model and for random-weight GGUFs of several shapes (GQA, head sizes 32/64/128, a gemma3
sliding-window model, an MoE, a deepseek2 MLA model, a gemma4 with SWA and shared-KV layers, and a model split
in three parts), each at contexts 512..32768 with f16 and q8_0 KV, a child process loads the model with llama.cpp,
creates each context, and reports the "... buffer size = X MiB" lines it logged. `--only-new` runs the last three.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger(__name__)

BUFFER = re.compile(r"(\S+)\s+(model|KV|compute|output|RS)\s+buffer size\s*=\s*([0-9.]+)\s*MiB")
KINDS = {"model": "buf_model", "KV": "buf_kv", "RS": "buf_kv", "compute": "buf_compute", "output": "buf_output"}


def child(model: str, configs: list[dict[str, Any]], ngl: int) -> None:
    """In the child: load once, create each context, print the buffers llama.cpp logged as JSON lines."""
    import ctypes

    from models.machine.probe_worker import import_bindings

    ll = import_bindings([])
    vram = _vram_sampler() if ngl > 0 else (lambda: 0)
    vram_before = vram()

    lines: list[str] = []
    partial = [""]

    @ll.llama_log_callback
    def on_log(level: int, text: bytes, _user: Any) -> None:
        partial[0] += (text or b"").decode("utf-8", "replace")
        while "\n" in partial[0]:
            line, partial[0] = partial[0].split("\n", 1)
            lines.append(line)

    ll.llama_log_set(on_log, ctypes.c_void_p(0))
    ll.llama_backend_init()
    mparams = ll.llama_model_default_params()
    mparams.n_gpu_layers = ngl
    loaded = ll.llama_model_load_from_file(model.encode(), mparams)
    if not loaded:
        print(json.dumps({"error": "load failed", "log": lines[-5:]}), flush=True)
        return

    def buffers(start: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in lines[start:]:
            match = BUFFER.search(line)
            if match:
                key = KINDS[match.group(2)]
                out[key] = out.get(key, 0) + int(round(float(match.group(3)) * 2**20))
                out[f"{match.group(1)}:{match.group(2)}"] = int(round(float(match.group(3)) * 2**20))
        return out

    model_buffers = buffers(0)
    vram_model = vram() - vram_before
    types = {"f16": 1, "q8_0": 8, "f32": 0, "q4_0": 2}
    for config in configs:
        start = len(lines)
        cparams = ll.llama_context_default_params()
        cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = config["n_ctx"], config["n_batch"], config["n_ubatch"]
        cparams.type_k, cparams.type_v = types[config["type_k"]], types[config["type_v"]]
        cparams.flash_attn_type = {"off": 0, "on": 1, "auto": -1}[config["flash_attn"]]
        cparams.swa_full = False  # as llama-bench and Tokenometer's worker do
        cparams.n_threads = cparams.n_threads_batch = 1
        ctx = ll.llama_init_from_model(loaded, cparams)
        if not ctx:
            print(json.dumps({**config, "error": " / ".join(lines[start:][-3:])}), flush=True)
            continue
        vram_ctx = vram() - vram_before if ngl > 0 else 0
        # "auto" becomes off where a device lacks the kernel (e.g. a CUDA build without its FA kernels).
        fa_off = any("Flash Attention not supported" in line for line in lines[start:])
        print(json.dumps({**config, **model_buffers, **buffers(start), "vram_model": vram_model,
                          "vram_total": vram_ctx, "fa_resolved": "off" if fa_off else config["flash_attn"]}),
              flush=True)
        ll.llama_free(ctx)
    ll.llama_model_free(loaded)


def _vram_sampler() -> Any:
    """Used memory of GPU 0 through NVML (0 when NVML is missing): the VRAM a load really takes."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
    except Exception:  # no NVML: the logged buffers are still compared
        return lambda: 0


def save_header(model: Path, out: Path) -> None:
    """Keep only a model's header (metadata and tensor table): enough to rebuild a same-shaped model elsewhere."""
    from models.gguf.reader import read_gguf_header

    header = read_gguf_header(model)
    with model.open("rb") as handle:
        out.write_bytes(handle.read(header.tensor_data_offset))


def rebuild(header_file: Path, out: Path) -> Path:
    """A loadable model from a saved header: the same tensor table over zero-filled (sparse) tensor data."""
    from models.gguf.reader import read_gguf_header

    data = header_file.read_bytes()

    class Unsized:
        size = None

        def read(self, offset: int, size: int) -> bytes:
            return data[offset:offset + size]

    header = read_gguf_header(Unsized())  # type: ignore[arg-type]
    last = header.tensors[-1]
    with out.open("wb") as handle:
        handle.write(data[:header.tensor_data_offset])
        handle.truncate(header.tensor_data_offset + last.offset + last.n_bytes)
    return out


def shapes() -> list[Any]:
    from tests.models.gguf.factory import Shape

    return [
        Shape(n_layer=4, n_embd=256, n_head=8, n_head_kv=2, n_ff=768),  # GQA 8/2, head 32
        Shape(n_layer=4, n_embd=256, n_head=4, n_head_kv=4, n_ff=1024),  # MHA, head 64
        Shape(n_layer=4, n_embd=512, n_head=4, n_head_kv=1, head_dim=128, n_ff=1536),  # head 128, GQA 4/1
        Shape(arch="gemma3", n_layer=6, n_embd=256, n_head=4, n_head_kv=1, head_dim=64, n_ff=768,
              sliding_window=512, tied_output=True),  # 5 of 6 layers sliding-window
        Shape(n_layer=2, n_embd=256, n_head=8, n_head_kv=2, n_ff=32768),  # FFN-bound compute buffer
        Shape(n_layer=2, n_embd=256, n_head=8, n_head_kv=2, n_ff=8192, n_expert=8, n_expert_used=2),  # MoE
        # Shapes not used to fit the compute constants (an out-of-sample check): wide, and tied output.
        Shape(n_layer=2, n_embd=1024, n_head=16, n_head_kv=4, head_dim=64, n_ff=4096),
        Shape(n_layer=3, n_embd=384, n_head=6, n_head_kv=2, head_dim=64, n_ff=12288, tied_output=True),
    ]


def extra_models(tmp: Path, tokenizer: dict[str, Any]) -> list[tuple[str, Path]]:
    """The shapes the estimate learnt last: MLA (K-only cache), SWA with shared KV layers, and a split model."""
    from tests.models.gguf.factory import Gemma4Shape, MlaShape, split_model, write_gemma4_model, write_mla_model, \
        write_model

    mla = MlaShape(n_layer=4, n_embd=512, n_head=8, kv_lora_rank=256, qk_rope=64, qk_nope=64, v_head=64, n_ff=1024)
    gemma4 = Gemma4Shape(swa_pattern=(True, True, False, True, False, True, True, False), shared_kv=3,
                         sliding_window=512)
    split_dir = tmp / "split"
    split_dir.mkdir()
    whole = write_model(tmp / "to-split.gguf", shapes()[0], tokenizer=tokenizer)
    return [(mla.label, write_mla_model(tmp / "mla.gguf", mla, tokenizer=tokenizer)),
            (gemma4.label, write_gemma4_model(tmp / "gemma4.gguf", gemma4, tokenizer=tokenizer)),
            (f"{shapes()[0].label} in 3 parts", split_model(whole, split_dir, 3)[0])]


def measure(model: Path, configs: list[dict[str, Any]], ngl: int) -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, __file__, "--child", str(model), "--ngl", str(ngl),
                           "--configs", json.dumps(configs)], capture_output=True, text=True, timeout=1800)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 and not rows:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-800:]}")
    return rows


def gpu_line(e: Any, row: dict[str, Any]) -> str:
    """Per device with offload: the GPU's buffers, the host's, and the VRAM NVML saw the load take."""
    def measured(kind: str, on_gpu: bool) -> int:
        return sum(v for k, v in row.items() if k.endswith(f":{kind}")
                   and (not k.startswith(("CPU", "CUDA_Host")) if on_gpu else k.startswith(("CPU", "CUDA_Host"))))

    gpu, host = e.device("GPU"), e.device("CPU")
    parts = []
    for label, est, real in (("gpu weights", gpu.weights, measured("model", True)),
                             ("gpu KV", gpu.kv, measured("KV", True)),
                             ("gpu compute", gpu.compute, measured("compute", True)),
                             ("host compute", host.compute, measured("compute", False)),
                             ("host weights", host.weights, measured("model", False))):
        parts.append(f"{label} {est / 2**20:.2f}/{real / 2**20:.2f} {pct(est, real).strip()}%")
    if row.get("vram_total"):
        parts.append(f"NVML used {row['vram_total'] / 2**20:.0f} MiB vs estimate {gpu.total / 2**20:.0f} MiB "
                     f"(+{(row['vram_total'] - gpu.total) / 2**20:.0f} MiB not in any buffer)")
    return "    " + "; ".join(parts)


def pct(est: int, real: int) -> str:
    if real == 0:
        return "   n/a" if est == 0 else "  +inf"
    return f"{100.0 * (est - real) / real:+6.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--configs", help=argparse.SUPPRESS)
    parser.add_argument("--ngl", type=int, default=0, help="n_gpu_layers (0 on a CPU-only build)")
    parser.add_argument("--quick", action="store_true", help="two contexts and the starter model only")
    parser.add_argument("--only-new", action="store_true", help="only the MLA, shared-KV and split models")
    parser.add_argument("--batch", type=int, default=2048, help="n_batch (llama-bench's default 2048)")
    parser.add_argument("--ubatch", type=int, default=512, help="n_ubatch (llama-bench's default 512)")
    parser.add_argument("--json", type=Path, help="also write every row here")
    parser.add_argument("--save-headers", type=Path, help="write each model's header here (for gpu_check.sh)")
    parser.add_argument("--headers", type=Path,
                        help="use models rebuilt from headers saved with --save-headers (zero weights)")
    args = parser.parse_args()
    if args.child:
        child(args.child, json.loads(args.configs), args.ngl)
        return 0

    from models.fit.estimate import estimate_memory
    from models.machine.hardware import probe_cpu
    from models.gguf.split import read_model_header
    from models.hub.starter import ensure_starter_model

    starter = None if args.headers else ensure_starter_model()
    contexts = [512, 8192] if args.quick else [512, 2048, 8192, 32768]
    batch = dict(n_batch=args.batch, n_ubatch=args.ubatch)
    configs = [dict(n_ctx=c, **batch, type_k=t, type_v=t, flash_attn="auto") for c in contexts for t in ("f16", "q8_0")]
    configs += [dict(n_ctx=c, **batch, type_k="f16", type_v="f16", flash_attn="off") for c in contexts[:3]]
    rows: list[dict[str, Any]] = []
    flags = probe_cpu([]).flags  # ggml repacks some quant types for this CPU; the logged buffers show it
    with tempfile.TemporaryDirectory(prefix="tokenometer-fit-") as tmp:
        if args.headers:
            models = [(f.stem, rebuild(f, Path(tmp) / f"{f.stem}.gguf")) for f in sorted(args.headers.glob("*.hdr"))]
        else:
            models = [("SmolLM2-135M Q4_1 (starter)", starter)]
        if args.only_new:
            from tests.models.gguf.factory import starter_tokenizer

            models = extra_models(Path(tmp), starter_tokenizer(starter))
        elif not args.quick and not args.headers:
            from tests.models.gguf.factory import starter_tokenizer, write_model  # numpy and gguf: here only

            tokenizer = starter_tokenizer(starter)
            for i, shape in enumerate(shapes()):
                models.append((shape.label, write_model(Path(tmp) / f"shape{i}.gguf", shape, tokenizer=tokenizer)))
            # Q4_0 matrices: ggml repacks them on AVX2/ARM CPUs, which changes the logged model buffers.
            q4 = shapes()[0]
            models.append((f"{q4.label} Q4_0", write_model(Path(tmp) / "q4.gguf", q4, tokenizer=tokenizer,
                                                           weight_type="q4_0")))
            models += extra_models(Path(tmp), tokenizer)
        if args.save_headers:
            args.save_headers.mkdir(parents=True, exist_ok=True)
            for i, (label, path) in enumerate(models):
                name = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")
                save_header(path, args.save_headers / f"{i}-{name}.hdr")
        print(f"{'model':<40} {'ctx':>6} {'kv':>5} {'fa':>4} | {'weights MiB est/meas  err%':>27} | "
              f"{'KV MiB est/meas  err%':>25} | {'compute MiB est/meas  err%':>27} | "
              f"{'output MiB est/meas  err%':>26} | total err%")
        for label, path in models:
            header = read_model_header(path)  # a split model: every part's tensors
            for row in measure(path, configs, args.ngl):
                if "error" in row:
                    print(f"{label:<40} {row.get('n_ctx', '?'):>6} error: {row['error']}")
                    continue
                e = estimate_memory(header, n_ctx=row["n_ctx"], type_k=row["type_k"], type_v=row["type_v"],
                                    n_batch=row["n_batch"], n_ubatch=row["n_ubatch"], n_gpu_layers=args.ngl,
                                    flash_attn=row.get("fa_resolved", row["flash_attn"]), gpu=args.ngl > 0,
                                    cpu_flags=flags)
                est = {"buf_model": e.weights, "buf_kv": e.kv, "buf_compute": e.compute, "buf_output": e.output}
                cells = []
                for key in ("buf_model", "buf_kv", "buf_compute", "buf_output"):
                    real = row.get(key, 0)
                    cells.append(f"{est[key] / 2**20:9.2f}/{real / 2**20:9.2f} {pct(est[key], real)}")
                total_real = sum(row.get(k, 0) for k in est)
                fa = row["flash_attn"] if row.get("fa_resolved") == row["flash_attn"] else "a>of"
                print(f"{label:<40} {row['n_ctx']:>6} {row['type_k']:>5} {fa:>4} | "
                      + " | ".join(cells) + f" | {pct(sum(est.values()), total_real)}", flush=True)
                rows.append({"model": label, **row, "estimate": est})
                if args.ngl > 0:
                    print(gpu_line(e, row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    worst = {k: max((abs(r["estimate"][k] - r.get(k, 0)) / r[k] for r in rows if r.get(k)), default=0.0)
             for k in ("buf_model", "buf_kv", "buf_compute", "buf_output")}
    print("worst |error| per buffer: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in worst.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
