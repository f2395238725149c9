"""Runs the results store could not take (locked, disk full, read-only), kept in a JSONL report that
`tokenometer import FILE` reads back, so a benchmark never loses what it measured."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import tempfile
from pathlib import Path

from models.errors import StoreError
from models.files import atomic_write_text
from models.results.store import RunRecord

log = logging.getLogger(__name__)


def _candidates(name: str) -> list[Path]:
    """Beside the store first; the temporary folder when the store's own disk cannot take it either."""
    from models.paths import recovery_dir

    return [recovery_dir() / name, Path(tempfile.gettempdir()) / "tokenometer-recovered" / name]


class RecoveryFile:
    """Collects unsaved runs; each one rewrites the whole file atomically, so it is always complete."""

    def __init__(self, *, name: str | None = None) -> None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.name = name or f"bench-{stamp}-{os.getpid()}.jsonl"
        self.records: list[RunRecord] = []
        self.reasons: list[str] = []  # why the store refused, once per distinct reason
        self.path: Path | None = None
        self.write_error = ""  # why no file could be written at all, when that happened

    def keep(self, record: RunRecord, error: StoreError | None = None) -> None:
        """Add one run the store refused and rewrite the file (callable as record_events' on_save_error)."""
        from models.results.reports import to_jsonl

        self.records.append(record)
        if error is not None and str(error) not in self.reasons:
            self.reasons.append(str(error))
        text = to_jsonl(self.records)
        for path in ([self.path] if self.path else []) + _candidates(self.name):
            try:
                atomic_write_text(path, text)
            except OSError as failure:
                self.write_error = f"{path}: {failure.strerror or failure}"
                log.info("Cannot keep unsaved runs in %s: %s", path, failure)
                continue
            if self.path is not None and self.path != path:
                self.path.unlink(missing_ok=True)  # an older, shorter copy elsewhere would only confuse
            self.path, self.write_error = path, ""
            return
        self.path = None

    def summary(self) -> str:
        """What happened to the runs, in words for the end of a command."""
        count = len(self.records)
        runs = "1 result" if count == 1 else f"{count} results"
        why = "; ".join(self.reasons) or "the results database could not be written"
        if self.path is not None:
            return (f"{runs} could not be saved to the results database ({why}). They are kept in {self.path}; "
                    f"once the database can be written, add them with: tokenometer import {self.path}")
        return (f"{runs} could not be saved to the results database ({why}), and no recovery file could be "
                f"written ({self.write_error}); the numbers printed above are all that is left of them.")
