"""Load profiles: the prompt and output lengths of a load test's requests, and when each request arrives."""

from __future__ import annotations

import csv
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from models.errors import BenchmarkError

log = logging.getLogger(__name__)

MAX_LENGTH = 1 << 20  # tokens; a length file asking for more is refused rather than run


@dataclass(frozen=True)
class RequestShape:
    """One request: prompt tokens in, output tokens out."""

    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Profile:
    """A named range of prompt and output lengths, drawn uniformly (or a fixed list of shapes from a file)."""

    name: str
    prompt: tuple[int, int]
    output: tuple[int, int]
    description: str
    shapes: tuple[RequestShape, ...] = ()

    def draw(self, count: int, *, seed: int = 0) -> list[RequestShape]:
        """`count` request shapes, the same for the same seed (so every load level sees the same requests)."""
        if self.shapes:
            return [self.shapes[i % len(self.shapes)] for i in range(count)]
        rng = random.Random(seed)
        return [RequestShape(rng.randint(*self.prompt), rng.randint(*self.output)) for _ in range(count)]

    @property
    def longest(self) -> int:
        """The most KV cells one request can fill (prompt plus output)."""
        if self.shapes:
            return max(s.prompt_tokens + s.output_tokens for s in self.shapes)
        return self.prompt[1] + self.output[1]


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("chat", (128, 512), (64, 256), "a chat turn: a few hundred tokens in, a paragraph or two out"),
    Profile("long-document", (2048, 4096), (128, 256), "a long document in, a summary out"),
    Profile("code", (512, 1536), (128, 512), "code and an instruction in, a function out"),
    Profile("tiny", (16, 32), (8, 16), "very short requests, for checking a setup quickly"),
)}


def profile_from_file(path: Path) -> Profile:
    """A profile from a file of lengths: CSV with prompt_tokens,output_tokens columns, or JSON lines of those keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BenchmarkError(f"Cannot read the lengths file {path}: {error}") from error
    rows: list[dict[str, object]]
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    value = json.loads(line)
                except ValueError as error:
                    raise BenchmarkError(f"{path.name} line {number} is not JSON: {error}") from error
                if not isinstance(value, dict):
                    raise BenchmarkError(f"{path.name} line {number}: expected an object with prompt_tokens "
                                         "and output_tokens.")
                rows.append(value)
    else:
        rows = list(csv.DictReader(text.splitlines()))
    shapes = []
    for number, row in enumerate(rows, 1):
        try:
            shape = RequestShape(int(str(row["prompt_tokens"])), int(str(row["output_tokens"])))
        except (KeyError, ValueError, TypeError):
            raise BenchmarkError(f"{path.name} row {number}: needs whole numbers in prompt_tokens and "
                                 "output_tokens.") from None
        if not (1 <= shape.prompt_tokens <= MAX_LENGTH and 1 <= shape.output_tokens <= MAX_LENGTH):
            raise BenchmarkError(f"{path.name} row {number}: lengths must be between 1 and {MAX_LENGTH} tokens, got "
                                 f"{shape.prompt_tokens} in and {shape.output_tokens} out.")
        shapes.append(shape)
    if not shapes:
        raise BenchmarkError(f"{path.name} holds no request lengths.")
    prompts = [s.prompt_tokens for s in shapes]
    outputs = [s.output_tokens for s in shapes]
    return Profile(path.stem, (min(prompts), max(prompts)), (min(outputs), max(outputs)),
                   f"{len(shapes)} request lengths from {path.name}", tuple(shapes))


def get_profile(name: str) -> Profile:
    """A built-in profile by name, or a lengths file by path."""
    if name in PROFILES:
        return PROFILES[name]
    path = Path(name)
    if path.exists():
        return profile_from_file(path)
    raise BenchmarkError(f"Unknown load profile {name!r}: use one of {', '.join(PROFILES)} or a CSV/JSONL file "
                         "of prompt_tokens,output_tokens.")


def arrival_times(count: int, *, rate: float | None, seed: int = 0) -> list[float]:
    """When each request is sent, in seconds: all at once for a closed loop (rate None), else a Poisson process."""
    if rate is None:
        return [0.0] * count
    if rate <= 0:
        raise BenchmarkError(f"The request rate must be above 0 per second, got {rate}.")
    rng = random.Random(seed)
    now, times = 0.0, []
    for _ in range(count):
        times.append(now)
        now += rng.expovariate(rate)
    return times
