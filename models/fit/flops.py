"""FLOPs to process one prompt token, from a GGUF header: the compute limit on prompt processing (pp t/s)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from models.fit.shape import model_dims
from models.fit.traffic import token_traffic, traffic_for_result
from models.gguf.reader import GGUFHeader

if TYPE_CHECKING:
    from models.bench.spec import BenchResult
    from models.machine.bandwidth import MachineBandwidth

log = logging.getLogger(__name__)


def _output_params(header: GGUFHeader) -> int:
    """Elements of the output matrix (or of the token embedding where it doubles as the output)."""
    by_name = {t.name: t for t in header.tensors}
    out = by_name.get("output.weight") or by_name.get("token_embd.weight")
    return out.n_elements if out else 0


def prompt_flops_per_token(header: GGUFHeader, *, n_prompt: int, n_depth: int = 0) -> float:
    """Useful FLOPs per token of a ppN test at depth d: 2 per weight multiplied, plus attention.

    Weights: every one a token multiplies (the active experts only for MoE models) but the output matrix,
    which llama-bench's prompt test (llama_batch_get_one: logits for the last token) applies once per batch.
    Attention: Q.K and softmax.V over the positions before the token, d + (N + 1) / 2 on average (causal), at
    most the window on sliding-window layers; recurrent layers have none. Useful work as MFU counts it: the
    masked half that llama.cpp may also multiply without flash attention is not counted.
    """
    if n_prompt <= 0:
        raise ValueError(f"a prompt test has at least one token (got n_prompt={n_prompt}).")
    traffic = token_traffic(header, n_gen=1)
    flops = 2.0 * max(traffic.active_params - _output_params(header), 0)
    dims = model_dims(header, [])
    if dims is None:
        return flops
    context = n_depth + (n_prompt + 1) / 2
    for il in range(dims.n_layer):
        if dims.recurrent[il] or not dims.heads[il]:
            continue
        ctx = min(context, dims.n_swa) if dims.swa[il] and dims.n_swa else context
        flops += 2.0 * dims.heads[il] * (dims.head_k[il] + dims.head_v[il]) * ctx
    return flops


def device_flops(result: BenchResult, limits: MachineBandwidth, *, header: GGUFHeader | None = None) -> float:
    """The FLOP/s of the device that did a result's arithmetic: the CPU's, or the GPU's with every layer
    offloaded; 0.0 where not known (not measured, no data-sheet figure, or a model split across devices)."""
    if not (bool(result.gpu_info) and result.n_gpu_layers != 0):
        return limits.cpu_flops
    kind = traffic_for_result(result, header=header).kind
    return limits.gpu_flops if kind == "gpu" else 0.0


def compute_limit(result: BenchResult, limits: MachineBandwidth, *,
                  header: GGUFHeader | None = None) -> tuple[float, float]:
    """(the compute limit on a prompt result's t/s, FLOPs per token); (0, FLOPs) where the FLOP/s are not known.

    Without the model's header (the file is gone) 2 FLOPs per parameter it recorded, attention left out.
    """
    if header is None and result.model_path:
        from pathlib import Path

        if Path(result.model_path).is_file():
            try:
                from models.gguf.split import read_model_header

                header = read_model_header(Path(result.model_path))
            except Exception as error:  # noqa: BLE001 - changed or unreadable since: the recorded size serves
                log.debug("header of %s not readable: %s", result.model_path, error)
    per_token = prompt_flops_per_token(header, n_prompt=result.n_prompt, n_depth=result.n_depth) if header \
        else 2.0 * result.model_n_params
    flops = device_flops(result, limits, header=header)
    return (flops / per_token if flops > 0 and per_token > 0 else 0.0), per_token


def compute_share(result: BenchResult, limits: MachineBandwidth, *, header: GGUFHeader | None = None) -> float | None:
    """A prompt result's speed as a fraction of this machine's compute limit (None: not known).

    "pp at 40% of this machine's compute limit" is `compute_share(...) = 0.40`.
    """
    if result.status != "ok" or result.n_prompt <= 0 or result.n_gen > 0 or result.avg_ts <= 0:
        return None
    ceiling, _ = compute_limit(result, limits, header=header)
    return result.avg_ts / ceiling if ceiling else None
