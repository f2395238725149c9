"""GGUF file names: llama.cpp's split-shard naming (gguf-split) and the quant label, in one place for the Hub
listing, the library and the results store."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

log = logging.getLogger(__name__)

# `name-00001-of-00003.gguf`, as llama.cpp's gguf-split writes it (llama_split_path: "%s-%05d-of-%05d.gguf").
SHARD_NAME = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)

# Quant labels as they appear in file names; the longest alternatives come first so Q4_K_M beats Q4_K.
# Besides llama.cpp's Q/IQ/F types: ternary TQ1_0/TQ2_0, MXFP4 (gpt-oss), NVFP4, and unsloth's "UD-" prefix.
_QUANT = re.compile(
    r"(?:^|[-_.\s/])(?P<q>(?:UD-)?(?:I?Q\d+(?:_[0-9]+)?(?:_K)?(?:_(?:XXS|XS|XL|NL|S|M|L))?(?:_\d_\d)?"
    r"|TQ\d_\d|MXFP4(?:_MOE)?|NVFP4|BF16|FP?16|FP?32|F64))(?=$|[-_.\s/])",
    re.IGNORECASE)


@dataclass(frozen=True)
class ShardName:
    """One shard of a split model: the name they share, this shard's number (from 1) and how many there are."""

    base: str
    index: int
    count: int


def shard_name(filename: str) -> ShardName | None:
    """The shard parts of a file name or path (`dir/name-00002-of-00003.gguf`); None for a single-file model."""
    match = SHARD_NAME.match(filename)
    if match is None:
        return None
    return ShardName(match.group("base"), int(match.group("index")), int(match.group("count")))


def parse_quant(filename: str) -> str | None:
    """The quant label in a GGUF file name or path (Q4_K_M, IQ2_XS, TQ1_0, MXFP4, BF16, UD-Q4_K_XL, ...),
    upper-cased; None if absent. The one parser for the Hub listing, the library and the results store."""
    path = PurePosixPath(filename)
    stem = path.name
    shard = shard_name(stem)
    stem = shard.base if shard else re.sub(r"\.gguf$", "", stem, flags=re.IGNORECASE)
    # The file name decides; a folder named after the quant (unsloth's layout) is the fallback.
    for text in (stem, *reversed(path.parent.parts)):
        found = [m.group("q") for m in _QUANT.finditer(text)]
        if found:
            label = found[-1].upper()
            return {"FP16": "F16", "FP32": "F32"}.get(label, label)
    return None
