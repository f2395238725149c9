"""The measuring commands' printers: every csv cell safe for a spreadsheet and a terminal, json whole."""

from __future__ import annotations

import csv
import io
import json

from models.bench.capacity.batched_output import ALL_KEYS, BatchedPrinter
from models.bench.quality.output import QualityPrinter


def test_csv_cells_from_file_names_cannot_run_as_formulas_or_escape_codes() -> None:
    out = io.StringIO()
    printer = BatchedPrinter("csv", out)
    printer.row({key: 1 for key in ALL_KEYS} | {"model_filename": "=HYPERLINK(\"x\")\x1b]0;title\x07.gguf",
                                                "speed_tg": -1.5})
    (row,) = csv.DictReader(io.StringIO(out.getvalue()))
    assert row["model_filename"].startswith("'=HYPERLINK") and "\x1b" not in row["model_filename"]
    assert row["speed_tg"] == "-1.5"  # numbers stay numbers


def test_json_is_written_whole_at_the_end_and_md_streams() -> None:
    out = io.StringIO()
    printer = QualityPrinter("json", out)
    printer.row({"model_filename": "a.gguf", "ppl": 2.0, "text": "t"})
    assert out.getvalue() == ""
    printer.finish()
    assert json.loads(out.getvalue())[0]["ppl"] == 2.0
    table = io.StringIO()
    md = QualityPrinter("md", table)
    md.row({"model_filename": "a.gguf", "ppl": 2.0, "text": "t", "n_chunk": 1, "n_ctx": 8, "n_scored": 4})
    assert "| a.gguf | 2.0000 |" in table.getvalue()
