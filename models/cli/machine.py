"""CLI: tokenometer hardware, fit."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from models.errors import TokenometerError
from models.gguf.reader import GGUFHeader
from models.text import plural, printable
from models.units import fmt_bytes

log = logging.getLogger(__name__)

KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's subcommands (each sets `handler`)."""
    hw = subparsers.add_parser("hardware", help="what this machine has for running models",
                               description="CPU, memory, disk, GPUs and the llama.cpp build's backends and devices.")
    hw.add_argument("--json", action="store_true", help="print JSON instead of text")
    hw.add_argument("--no-llama", action="store_true", help="skip asking the llama.cpp build (no child process)")
    hw.add_argument("--measure-bandwidth", action="store_true",
                    help="measure the memory bandwidth again (else the stored figure, measured once when missing)")
    hw.add_argument("--no-bandwidth", action="store_true", help="do not measure the memory bandwidth")
    hw.set_defaults(handler=_hardware)

    fit = subparsers.add_parser("fit", help="will a model run here, and how",
                                description="Memory needed by a GGUF model and the verdict for this machine. "
                                            "MODEL is a local .gguf file or REPO/FILE on the Hugging Face Hub "
                                            "(only the header is fetched).")
    fit.add_argument("model", metavar="MODEL|REPO/FILE")
    fit.add_argument("--ctx", type=int, default=None, help="context size (default: min(training context, 4096))")
    fit.add_argument("--ngl", type=int, default=None,
                     help="estimate for this many offloaded layers (default: the suggested number)")
    fit.add_argument("-ctk", "--cache-type-k", dest="type_k", default="f16", choices=KV_TYPES)
    fit.add_argument("-ctv", "--cache-type-v", dest="type_v", default="f16", choices=KV_TYPES)
    fit.add_argument("-b", "--batch", dest="n_batch", type=int, default=2048)
    fit.add_argument("-ub", "--ubatch", dest="n_ubatch", type=int, default=512)
    fit.add_argument("-fa", "--flash-attn", dest="flash_attn", default="auto", choices=("on", "off", "auto"))
    fit.add_argument("--json", action="store_true", help="print JSON instead of text")
    fit.add_argument("--rpc", default=None, metavar="HOST:PORT[,HOST:PORT]",
                     help="estimate for this machine pooled with these RPC servers (llama.cpp's layer split)")
    fit.add_argument("--no-speed", action="store_true",
                     help="skip the speed prediction (it measures the memory bandwidth once if none is stored)")
    fit.set_defaults(handler=_fit)


def _hardware(args: argparse.Namespace) -> int:
    from models.machine.hardware import probe_hardware

    from models.machine.bandwidth import machine_bandwidth

    info = probe_hardware(with_llama=not args.no_llama)
    bandwidth = machine_bandwidth(refresh=args.measure_bandwidth, measure=not args.no_bandwidth)
    if args.json:
        print(json.dumps({**info.to_json(), "bandwidth": bandwidth.to_json()}, indent=2))
        return 0
    cpu = info.cpu
    print(f"CPU        {cpu.model} ({plural(cpu.physical_cores, 'core')}, {plural(cpu.logical_cores, 'thread')}, "
          f"{cpu.arch})")
    print(f"Features   {' '.join(cpu.flags) or '-'}")
    if cpu.caches:
        print(f"Caches     {', '.join(f'{k} {fmt_bytes(v)}' for k, v in cpu.caches.items())}")
    print(f"RAM        {fmt_bytes(info.ram_total)} total, {fmt_bytes(info.ram_available)} available; "
          f"swap {fmt_bytes(info.swap_total)} ({fmt_bytes(info.swap_free)} free)")
    if not info.gpus:
        print("GPU        none found: CPU only")
    for gpu in info.gpus:
        extra = f", driver {gpu.driver}" if gpu.driver else ""
        extra += f", power limit {gpu.power_limit_w:.0f} W" if gpu.power_limit_w else ""
        extra += ", unified memory" if gpu.unified_memory else ""
        print(f"GPU {gpu.index}      {gpu.name}: {fmt_bytes(gpu.memory_total)} "
              f"({fmt_bytes(gpu.memory_free)} free){extra}")
    for disk in info.disks:
        print(f"Disk       {disk.path}: {fmt_bytes(disk.free)} free of {fmt_bytes(disk.total)}")
    if info.llama is not None and not info.llama.error:
        b = info.llama
        print(f"llama.cpp  llama-cpp-python {b.llama_cpp_python_version}, commit {b.commit or '?'}, "
              f"backends {', '.join(b.backends) or '?'}, GPU offload {'yes' if b.supports_gpu_offload else 'no'}")
        print("RPC        " + ("yes: this build can serve devices (tokenometer rpc-server) and use other machines' "
                                 "(bench --rpc)" if b.supports_rpc else
                                 "no: this build has no RPC backend (rebuild it with python3 dev.py install)"))
        for dev in b.devices:
            print(f"  device   {dev['name']} ({dev['type']}): {dev['description']}, "
                  f"{fmt_bytes(dev['memory_free'])} free of {fmt_bytes(dev['memory_total'])}")
    print(f"Bandwidth  {bandwidth.summary()}"
          + (f", measured {bandwidth.cpu.measured_at}" if bandwidth.cpu else ""))
    print(f"Compute    {bandwidth.compute_summary()}")
    for note in info.notes + bandwidth.notes:
        print(f"note       {note}")
    return 0


def _load_header(model: str) -> tuple[GGUFHeader, str]:
    """The model's header; a split model's first part brings every part's tensors (read_model_header)."""
    from models.gguf.split import read_model_header

    path = Path(model).expanduser()
    if path.exists():
        return read_model_header(path), str(path)
    parts = model.split("/")
    if path.is_absolute() or model.startswith((".", "~")):
        raise TokenometerError(f"{model}: no such file.")
    if len(parts) < 3 or not model.endswith(".gguf"):
        raise TokenometerError(f"{model}: no such file, and not REPO/FILE.gguf (e.g. owner/repo/model-Q4_K_M.gguf).")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        from models.hub.remote import read_remote_header
    except ImportError as error:
        raise TokenometerError(f"Reading a header from the Hub is not available in this build ({error}).") from error
    return read_remote_header(repo_id, filename), f"{repo_id}/{filename}"


def _fit(args: argparse.Namespace) -> int:
    from models.fit.estimate import estimate_memory, fit_verdict
    from models.machine.hardware import probe_hardware

    header, where = _load_header(args.model)
    hardware = probe_hardware()
    if getattr(args, "rpc", None):
        from models.cli.rpc import fit_pool

        return fit_pool(header, where, hardware, args)
    options: dict[str, Any] = dict(type_k=args.type_k, type_v=args.type_v, n_batch=args.n_batch,
                                   n_ubatch=args.n_ubatch, flash_attn=args.flash_attn)
    verdict = fit_verdict(header, hardware, n_ctx=args.ctx, **options)
    estimate = verdict.estimate
    if args.ngl is not None:
        build = hardware.llama
        gpu = bool(hardware.gpus) and (build is None or bool(build.error) or bool(build.gpu_devices))
        estimate = estimate_memory(header, n_ctx=verdict.n_ctx, n_gpu_layers=args.ngl, gpu=gpu,
                                   cpu_flags=hardware.cpu.flags, **options)
    model = {"source": where, "architecture": header.architecture, "name": header.name,
             "n_params": header.n_params, "file_type": header.file_type_name, "layers": header.block_count,
             "context_length": header.context_length, "size": header.tensor_bytes, "split_count": header.split_count}
    speed = None
    if not args.no_speed:
        from models.fit.here import predict_here

        speed = predict_here(header, hardware, n_gpu_layers=estimate.n_gpu_layers, type_k=args.type_k,
                             type_v=args.type_v)
    if args.json:
        print(json.dumps({"model": model, "verdict": verdict.to_json(), "estimate": estimate.to_json(),
                          "speed": speed.to_json() if speed else None}, indent=2))
        return 0
    print(f"Model      {printable(header.name or where)} ({header.architecture}, {header.n_params / 1e9:.2f} B params, "
          f"{header.file_type_name}, {fmt_bytes(header.tensor_bytes)}, {header.block_count} layers, "
          f"{f', {header.split_count} parts' if header.is_split else ''}, trained context {header.context_length})")
    print(f"Estimate   n_ctx {estimate.n_ctx}, n_gpu_layers {estimate.n_gpu_layers}, KV {args.type_k}/{args.type_v}, "
          f"flash attention {'on' if estimate.flash_attn else 'off'}")
    for dev in estimate.devices:
        if dev.total:
            print(f"  {dev.device:<8} weights {fmt_bytes(dev.weights)}, KV {fmt_bytes(dev.kv)}, "
                  f"compute {fmt_bytes(dev.compute)}, "
                  f"output {fmt_bytes(dev.output)} = {fmt_bytes(dev.total)}")
    if estimate.expert_weights:
        print(f"  experts  {fmt_bytes(estimate.expert_weights)} of the weights are MoE experts")
    print(f"Verdict    {verdict.summary}")
    print(f"Suggested  n_gpu_layers {verdict.n_gpu_layers}; headroom RAM {fmt_bytes(verdict.headroom_ram)}"
          + (f", VRAM {fmt_bytes(verdict.headroom_vram)}" if verdict.headroom_vram else ""))
    if speed is not None:
        print(f"Speed      tg128 {speed.text()}"
              + (f" (limit {speed.tg_ceiling:.1f} t/s: {fmt_bytes(speed.bytes_per_token)} read per token"
                 f"; learned from {plural(speed.n_models, 'model')} measured here)" if speed.tg_ceiling else "")
              + (f"; pp512 ≈ {speed.pp:.0f} t/s ({speed.pp_low:.0f}-{speed.pp_high:.0f})" if speed.pp else "")
              + (f" (compute limit {speed.pp_ceiling:.0f} t/s)" if speed.pp_ceiling else ""))
    if not args.no_speed:
        from models.fit.here import memory_error_here

        history = memory_error_here(header.architecture)
        if history:
            print(f"History    {history}")
    for note in verdict.notes + (speed.notes if speed else []):
        print(f"note       {note}")
    return 0
