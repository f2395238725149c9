"""The llama.cpp settings every one-model command shares (threads, offload, batch sizes, flash attention, KV types)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def comma_ints(text: str) -> tuple[int, ...]:
    """An argparse type: a comma list of whole numbers (llama-bench's lists), e.g. "1,2,4"."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_engine_flags(parser: argparse.ArgumentParser, *, batch_help: str = "n_batch (2048)",
                     kv_types: bool = True) -> None:
    """Add -t -ngl -b -ub -fa (and -ctk -ctv) with llama.cpp's meanings and llama-bench's defaults."""
    add = parser.add_argument
    add("-t", "--threads", type=int, default=None, metavar="N", help="threads (default: as tokenometer bench)")
    add("-ngl", "--n-gpu-layers", type=int, default=None, metavar="N", help="layers on the GPU (all)")
    add("-b", "--batch-size", type=int, default=2048, metavar="N", help=batch_help)
    add("-ub", "--ubatch-size", type=int, default=512, metavar="N", help="n_ubatch, at most n_batch (512)")
    add("-fa", "--flash-attn", choices=("on", "off", "auto"), default="auto", help="flash attention (auto)")
    if kv_types:
        add("-ctk", "--cache-type-k", default="f16", metavar="TYPE", help="K cache type (f16)")
        add("-ctv", "--cache-type-v", default="f16", metavar="TYPE", help="V cache type (f16)")


def engine_params(args: argparse.Namespace, model: Path) -> Any:
    """The BenchParams the flags describe; what is not given takes tokenometer bench's default."""
    from models.bench.spec import BenchParams, BenchSweep

    defaults = BenchSweep(models=[model])
    return BenchParams(
        n_threads=args.threads if args.threads is not None else defaults.n_threads[0],
        n_gpu_layers=args.n_gpu_layers if args.n_gpu_layers is not None else defaults.n_gpu_layers[0],
        n_batch=args.batch_size, n_ubatch=min(args.ubatch_size, args.batch_size), flash_attn=args.flash_attn,
        type_k=getattr(args, "cache_type_k", "f16"), type_v=getattr(args, "cache_type_v", "f16"))
