"""Load-test results written for people (a table and the one-sentence answer) and for scripts (csv, json, jsonl)."""

from __future__ import annotations

import logging
from typing import Any

from models.bench.record_printer import RecordPrinter
from models.bench.capacity.serving import LoadSummary
from models.text import printable

log = logging.getLogger(__name__)

FORMATS = ("md", "csv", "json", "jsonl")
_LATENCIES = ("ttft", "tpot", "itl", "e2e")
_STATS = ("mean", "median", "p90", "p99")


def flat_summary(summary: LoadSummary, context: dict[str, Any]) -> dict[str, Any]:
    """One level as one flat record: the context (model, target), then vLLM's names with _ms for latencies."""
    data = summary.to_json()
    row: dict[str, Any] = dict(context)
    for key in ("concurrency", "rate", "duration_s", "completed", "failed", "input_tokens", "output_tokens",
                "request_throughput", "output_throughput", "total_token_throughput", "goodput", "per_user_tps",
                "slo_met"):
        row[key] = data[key]
    for name in _LATENCIES:
        for stat in _STATS:
            row[f"{stat}_{name}_ms"] = data[name][stat]
    row["slo_ttft_s"] = summary.slo.ttft
    row["slo_tpot_s"] = summary.slo.tpot
    row["slo_percentile"] = summary.slo.percentile
    row["errors"] = "; ".join(summary.errors)
    return row


class LoadPrinter(RecordPrinter):
    """Prints each level as it finishes (md, csv, jsonl) or all of them with the answer at the end (json)."""

    FORMATS = FORMATS

    def level(self, summary: LoadSummary, context: dict[str, Any]) -> None:
        self._summary = summary
        self.row(flat_summary(summary, context))

    def md_row(self, rec: dict[str, Any]) -> None:
        summary, out = self._summary, self.stream
        if len(self.records) == 1:
            out.write(f"\n{printable(str(rec.get('model', '')))} — {printable(str(rec.get('target', '')))}, profile "
                      f"{printable(str(rec.get('profile', '')))}, SLO {summary.slo.describe()}\n\n")
            out.write("| people | rate/s | done | failed | req/s | out t/s | t/s each | TTFT p50 ms | TTFT p90 ms "
                      "| TTFT p99 ms | TPOT p50 ms | TPOT p90 ms | ITL p50 ms | E2E p50 ms | goodput/s | SLO |\n")
            out.write("|" + "---:|" * 15 + ":---:|\n")
        rate = f"{summary.rate:g}" if summary.rate is not None else "–"
        out.write(f"| {summary.concurrency} | {rate} | {summary.completed} | {summary.failed} | "
                  f"{summary.request_throughput:.2f} | {summary.output_throughput:.1f} | "
                  f"{summary.per_user_tps:.1f} | {summary.ttft.median:.0f} | {summary.ttft.p90:.0f} | "
                  f"{summary.ttft.p99:.0f} | {summary.tpot.median:.1f} | {summary.tpot.p90:.1f} | "
                  f"{summary.itl.median:.1f} | {summary.e2e.median:.0f} | {summary.goodput:.2f} | "
                  f"{'met' if summary.slo_met else 'missed'} |\n")

    def json_document(self, sentence: str = "") -> Any:
        return {"levels": self.records, "answer": sentence}

    def md_end(self, sentence: str = "") -> None:
        self.stream.write(f"\n{sentence}\n")
