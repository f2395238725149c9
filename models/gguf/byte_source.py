"""Random access to a file's bytes, local or remote: what the bounded GGUF header reader reads from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from models.errors import ModelFileError


@runtime_checkable
class ByteSource(Protocol):
    """Random access to a GGUF file's bytes (a local file, or HTTP range requests)."""

    def read(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset`; fewer only at the end of the file."""
        ...

    @property
    def size(self) -> int | None:
        """The file's size in bytes, or None when unknown."""
        ...


class FileSource:
    """A ByteSource over a local file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._size = os.stat(self.path).st_size
        except OSError as error:
            raise ModelFileError(f"Cannot open {self.path}: {error.strerror or error}") from error

    @property
    def size(self) -> int | None:
        return self._size

    def read(self, offset: int, size: int) -> bytes:
        try:
            # Opened per read: the reader asks for few, large chunks, and nothing stays open after an error.
            with self.path.open("rb") as handle:
                handle.seek(offset)
                return handle.read(size)
        except OSError as error:
            raise ModelFileError(f"Cannot read {self.path}: {error.strerror or error}") from error
