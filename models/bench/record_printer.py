"""One printer shape for the flat records the measuring commands write: a table for people (each method draws its
own), and csv, json and jsonl for scripts, with the same safety for every cell."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from typing import Any, TextIO

from models.bench.fields import neutralise_formula
from models.text import printable

log = logging.getLogger(__name__)


def safe_cell(value: Any) -> Any:
    """A csv cell: text with control characters shown and formulas neutralised; numbers as they are."""
    if isinstance(value, str):
        return neutralise_formula(printable(value))
    return value


class RecordPrinter:
    """Writes records as they arrive (md, csv and jsonl stream; json is written whole at the end).

    A subclass sets FORMATS and KEYS (the csv columns) and draws the table in `md_row` and `md_end`.
    """

    FORMATS: tuple[str, ...] = ("md", "csv", "json", "jsonl")
    KEYS: Sequence[str] = ()

    def __init__(self, fmt: str, stream: TextIO) -> None:
        if fmt not in self.FORMATS:
            raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(self.FORMATS)}")
        self.fmt = fmt
        self.stream = stream
        self.records: list[dict[str, Any]] = []
        self._csv: Any = None

    def row(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        if self.fmt == "md":
            self.md_row(rec)
        elif self.fmt == "jsonl":
            self.stream.write(json.dumps(rec) + "\n")  # ensure_ascii: control characters stay escaped
        elif self.fmt == "csv":
            if self._csv is None:
                self._csv = csv.DictWriter(self.stream, fieldnames=list(self.KEYS or rec), lineterminator="\n",
                                           extrasaction="ignore")
                self._csv.writeheader()
            self._csv.writerow({key: safe_cell(value) for key, value in rec.items()})
        self.stream.flush()

    def finish(self, *args: Any) -> None:
        if self.fmt == "json":
            json.dump(self.json_document(*args), self.stream, indent=2)
            self.stream.write("\n")
        elif self.fmt == "md":
            self.md_end(*args)
        self.stream.flush()

    def json_document(self, *args: Any) -> Any:
        return self.records

    def md_row(self, rec: dict[str, Any]) -> None:
        raise NotImplementedError

    def md_end(self, *args: Any) -> None:
        """What the table ends with (a legend, the answer); nothing by default."""
