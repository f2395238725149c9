"""A model file given by the user (Import, Add file), checked when it is given: its GGUF header, and words if it is not one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from models.errors import ModelFileError

log = logging.getLogger(__name__)

SNIFF_BYTES = 64  # enough to tell text, an archive or an image from a GGUF header
KNOWN_KINDS: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a zip archive"), (b"\x1f\x8b", "a gzip archive"), (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"), (b"%PDF", "a PDF document"), (b"\x7fELF", "a program (ELF)"),
    (b"PAR1", "a Parquet file"), (b"\x93NUMPY", "a NumPy array"),
    (b"ggjt", "an old GGML (ggjt) model, which llama.cpp no longer loads; convert it to GGUF"),
    (b"ggml", "an old GGML model, which llama.cpp no longer loads; convert it to GGUF"),
)


class NotAModelError(ModelFileError):
    """The file given is not a GGUF model llama.cpp can load; the message says what it is instead."""

    def __init__(self, message: str, *, path: Path, detail: str) -> None:
        super().__init__(message)
        self.path = path
        self.detail = detail  # the header reader's own words, kept for the tooltip and the log


def _what_it_is(head: bytes, path: Path) -> str:
    for magic, kind in KNOWN_KINDS:
        if head.startswith(magic):
            return kind
    if path.suffix.lower() == ".safetensors" or head[8:9] == b"{":
        return "a safetensors file (convert it to GGUF with llama.cpp's convert_hf_to_gguf.py)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "not a GGUF file (its first bytes are not GGUF's)"
    if text.strip() and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        words = " ".join(text.split())
        first = words if len(words) <= 32 else words[:32].rsplit(" ", 1)[0] + " …"
        return f"a text file (it begins “{first}”)"
    return "not a GGUF file (its first bytes are not GGUF's)"


def check_model_file(path: Path) -> Any:
    """The file's GGUF header (models.gguf.reader.GGUFHeader); NotAModelError in words when it has none.

    Reads at most the header (bounded), never the weights: call it from a job, as the file is given.
    """
    from models.gguf.reader import read_gguf_header

    path = Path(path).expanduser()
    if path.is_dir():
        raise NotAModelError(f"“{path.name}” is a folder, not a model file. Use “Add folder…” to scan a folder.",
                             path=path, detail="a directory")
    if not path.exists():
        raise NotAModelError(f"“{path}” does not exist (moved or deleted?).", path=path, detail="missing")
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as error:
        raise NotAModelError(f"“{path.name}” cannot be read: {error.strerror or error}.", path=path,
                             detail=str(error)) from error
    if not head:
        raise NotAModelError(f"“{path.name}” is empty (0 bytes), not a model.", path=path, detail="empty file")
    try:
        return read_gguf_header(path)
    except ModelFileError as error:
        if head.startswith(b"GGUF"):
            # A GGUF, but a damaged or unsupported one: the reader's own sentence is the useful part.
            message = f"“{path.name}” is a GGUF file that llama.cpp could not load: {error}"
        else:
            message = (f"“{path.name}” is {_what_it_is(head, path)}, not a GGUF model. Pick a .gguf file: "
                       "a model downloaded from the Hub or converted with llama.cpp.")
        log.info("refused %s: %s", path, error)
        raise NotAModelError(message, path=path, detail=str(error)) from error
