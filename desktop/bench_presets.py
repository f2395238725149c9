"""The Benchmark page's presets: the form's values for each, what each is, and what LocalScore leaves free."""

from __future__ import annotations

import logging

from models.bench.localscore import ABOUT as LOCALSCORE_ABOUT
from models.bench.localscore import LOCALSCORE_BATCH, LOCALSCORE_TESTS, LOCALSCORE_UBATCH

log = logging.getLogger(__name__)

# Repetitions default to auto (repeat until the 95% interval is within ±2%): a figure that says how far to trust
# it. Standard keeps llama-bench's fixed 5 because its promise is "the numbers llama-bench would print", and
# LocalScore keeps its own single repetition so its score compares with localscore.ai's.
LOCALSCORE = "LocalScore"
PRESETS: dict[str, dict[str, str]] = {
    "Quick": {"n_prompt": "64", "n_gen": "16", "n_pg": "", "n_depth": "0", "repetitions": "auto"},
    "Standard": {"n_prompt": "512", "n_gen": "128", "n_pg": "", "n_depth": "0", "repetitions": "5"},
    "Long context": {"n_prompt": "512", "n_gen": "128", "n_pg": "", "n_depth": "0, 512, 2048, 4096",
                     "repetitions": "auto"},
    # Shown as LocalScore's nine prompt:generation pairs; run as its tests (models.bench.localscore).
    LOCALSCORE: {"n_prompt": "0", "n_gen": "0", "n_pg": ", ".join(f"{p}:{g}" for p, g, _ in LOCALSCORE_TESTS),
                 "n_depth": "0", "n_batch": str(LOCALSCORE_BATCH), "n_ubatch": str(LOCALSCORE_UBATCH),
                 "flash_attn": "off", "type_k": "f16", "type_v": "f16", "use_mmap": "auto", "ttft": "0",
                 "repetitions": "1"},
}
PRESET_TIPS = {
    "Quick": "A fast look: 64 prompt tokens, 16 generated, repeated until the 95% interval is within ±2% "
             "(at least 3 repetitions, at most 30 or 60 s per test).",
    "Standard": "llama-bench's defaults, to compare with its numbers: pp512 and tg128, a fixed 5 repetitions as "
                "llama-bench runs them. Type auto in Repetitions to repeat until the interval is within ±2%.",
    "Long context": "pp512 and tg128 after 0, 512, 2048 and 4096 tokens already in the context, each repeated "
                    "until its 95% interval is within ±2%.",
    LOCALSCORE: LOCALSCORE_ABOUT + " Runs each pair as a prompt test and a generation test at the prompt's depth, "
                "with LocalScore's settings (batch 2048/512, flash attention off, one repetition).",
    "Custom": "Set every engine parameter; comma lists are swept like llama-bench's.",
}
# What LocalScore lets a user choose (its -t, --cpu / GPU and repetitions); the rest of the form is its own.
LOCALSCORE_FREE = ("n_threads", "n_gpu_layers", "repetitions")
