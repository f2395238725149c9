"""Split GGUF models (gguf-split's `name-00001-of-00003.gguf`): every shard's header read and summed into one."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from models.errors import ModelFileError
from models.gguf.byte_source import ByteSource
from models.gguf.reader import GGUFHeader, HeaderLimits, read_gguf_header
from models.hub.names import shard_name

log = logging.getLogger(__name__)


def shard_names(first: str, count: int) -> list[str]:
    """The names of all `count` shards, from the first shard's name (a file name or a path inside a repo)."""
    shard = shard_name(first)  # llama.cpp's llama_split_path: "%s-%05d-of-%05d.gguf" (1-based shard number)
    if shard is None or shard.index != 1:
        raise ModelFileError(f"{first} is part 1 of a {count}-part split model, but its name does not follow "
                             "llama.cpp's NAME-00001-of-0000N.gguf pattern, so the other parts cannot be found.")
    if shard.count != count:
        raise ModelFileError(f"{first}: its name says {shard.count} parts but its header says {count}.")
    return [f"{shard.base}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def merge_shards(headers: list[GGUFHeader], names: list[str]) -> GGUFHeader:
    """One header for the whole model: the first shard's metadata, every shard's tensors (tagged with their shard).

    Checks what llama.cpp checks when it loads the other splits: each shard's split.no, and no tensor twice.
    """
    first = headers[0]
    tensors = []
    seen: set[str] = set()
    for index, (header, name) in enumerate(zip(headers, names)):
        if header.split_index != index or (index and header.split_count not in (first.split_count, 1)):
            raise ModelFileError(f"{name} is not part {index + 1} of {first.split_count}: its header says split.no "
                                 f"{header.split_index} of {header.split_count}.")
        for tensor in header.tensors:
            if tensor.name in seen:
                raise ModelFileError(f"Tensor '{tensor.name}' appears in more than one part of the split model "
                                     f"({name} among them).")
            seen.add(tensor.name)
            tensors.append(dataclasses.replace(tensor, shard=index))
    if first.split_tensors and first.split_tensors != len(tensors):
        raise ModelFileError(f"The split model's parts hold {len(tensors)} tensors; its first part announces "
                             f"{first.split_tensors}.")
    sizes = [h.file_size for h in headers]
    return dataclasses.replace(
        first, tensors=tensors, n_params=sum(t.n_elements for t in tensors),
        tensor_bytes=sum(t.n_bytes for t in tensors),
        file_size=sum(s for s in sizes if s is not None) if all(s is not None for s in sizes) else None,
        bytes_read=sum(h.bytes_read for h in headers))


def read_split_headers(first: GGUFHeader, first_name: str, open_shard: Callable[[str], ByteSource | Path], *,
                       limits: HeaderLimits | None = None) -> GGUFHeader:
    """The whole model's header from its first shard's, reading the others through `open_shard(name)`."""
    if not first.is_split:
        return first
    if first.split_index != 0:
        # llama.cpp: "model must be loaded with the first split"
        raise ModelFileError(f"{first_name} is part {first.split_index + 1} of {first.split_count} of a split model; "
                             "give the first part (…-00001-of-…gguf), which llama.cpp loads the others from.")
    names = shard_names(first_name, first.split_count)
    headers = [first]
    for name in names[1:]:
        try:
            headers.append(read_gguf_header(open_shard(name), limits=limits))
        except ModelFileError as error:
            raise ModelFileError(f"Part {len(headers) + 1} of {first.split_count} ({name}): {error}") from error
    merged = merge_shards(headers, names)
    log.debug("Split model %s: %d parts, %d tensors", first_name, len(headers), len(merged.tensors))
    return merged


def read_model_header(path: Path, *, limits: HeaderLimits | None = None) -> GGUFHeader:
    """A local model's header; for a split model the first shard's metadata with every shard's tensors."""
    path = Path(path)
    header = read_gguf_header(path, limits=limits)

    def open_shard(name: str) -> Path:
        shard = path.with_name(name)
        if not shard.is_file():
            raise ModelFileError(f"Missing part of the split model: {shard} (llama.cpp needs every part).")
        return shard

    return read_split_headers(header, path.name, open_shard, limits=limits)
