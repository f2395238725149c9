"""GGUF file names: llama.cpp's split-shard naming (gguf-split), in one place for the Hub listing and the library."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)

# `name-00001-of-00003.gguf`, as llama.cpp's gguf-split writes it (llama_split_path: "%s-%05d-of-%05d.gguf").
SHARD_NAME = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


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
