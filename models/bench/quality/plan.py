"""What a quality job asks for (llama-perplexity's -f, -c, --chunks, --kl-divergence-base): kept light for BenchJob."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from models.errors import BenchmarkError

log = logging.getLogger(__name__)

WIKITEXT2 = "wikitext-2"


@dataclass(frozen=True)
class QualityPlan:
    """llama-perplexity's -f/-c/--chunks and --kl-divergence(-base): a text, a chunk size, optionally a reference.

    `reference`: a reference file to compare against (its chunk size wins over n_ctx, as in llama-perplexity);
    `save_reference`: write this run's log-probabilities there (this model becomes the reference).
    """

    text: str = WIKITEXT2  # a text file's path, or "wikitext-2"
    n_ctx: int = 512
    n_chunks: int = 0  # 0: every whole chunk of the text
    reference: str = ""
    save_reference: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QualityPlan:
        return cls(text=str(data.get("text", WIKITEXT2)), n_ctx=int(data.get("n_ctx", 512)),
                   n_chunks=int(data.get("n_chunks", 0)), reference=str(data.get("reference", "")),
                   save_reference=str(data.get("save_reference", "")))

    def problem(self) -> str | None:
        """Why the plan cannot run, in words, or None; reads only the reference's header."""
        if self.n_ctx < 8:
            return f"The chunk size (-c) must be at least 8 tokens, got {self.n_ctx}."
        if self.n_chunks < 0:
            return f"The number of chunks must be 0 (all) or more, got {self.n_chunks}."
        if self.reference and self.save_reference:
            return "Either compare against a reference (--ref) or save one (--save-ref), not both."
        if self.text != WIKITEXT2:
            path = Path(self.text)
            if not path.is_file():
                return f"The text file {path} does not exist." if not path.exists() else f"{path} is not a file."
        if self.reference:
            try:
                from models.bench.quality.reference import read_reference

                read_reference(Path(self.reference))
            except BenchmarkError as error:
                return str(error)
        return None


def reference_cache(ref_model: Path, text: str, *, n_ctx: int, n_chunks: int) -> Path:
    """Where a reference model's log-probabilities are kept: one file per model, text, chunk size and count."""
    from models.paths import data_dir

    digest = hashlib.sha256()
    digest.update(str(ref_model.resolve()).encode() + b"\0")
    digest.update(text.encode() if text == WIKITEXT2 else Path(text).read_bytes())
    name = f"{ref_model.stem}.c{n_ctx}.n{n_chunks}.{digest.hexdigest()[:16]}.kld"
    return data_dir(create=True) / "quality" / name
