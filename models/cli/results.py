"""CLI: tokenometer runs, compare, report, import."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import ReportError
from models.text import plural, printable

if TYPE_CHECKING:  # the store and comparison modules load only when a results command runs
    from models.results.compare import Comparison
    from models.results.measurements import Measurement
    from models.results.store import ResultsStore, RunRecord

log = logging.getLogger(__name__)


def _run_ids(specs: list[str]) -> list[int | tuple[int, int]] | None:
    """Run ids ("7", "3,4") and ranges ("3-5", kept as a pair: 1-999999999 is never expanded); None for "all"."""
    ids: list[int | tuple[int, int]] = []
    for spec in specs:
        for part in spec.split(","):
            part = part.strip()
            if part == "all":
                return None
            try:
                if "-" in part:
                    first, last = (int(x) for x in part.split("-", 1))
                    ids.append((first, last))
                elif part:
                    ids.append(int(part))
            except ValueError:
                raise ReportError(f"{part!r} is not a run id (use numbers like 7, ranges like 3-5, or all).") \
                    from None
    return list(dict.fromkeys(ids))


def _resolve(store: ResultsStore, items: list[int | tuple[int, int]]) -> list[int]:
    """Ids in the order asked; a range stands for the stored ids inside it (found in SQL), a single id must exist."""
    ids: list[int] = []
    for item in items:
        if isinstance(item, tuple):
            found = store.ids_in_ranges([item])
            if not found:
                raise ReportError(f"No runs with ids in {item[0]}-{item[1]} in the results database.")
            ids += found
        else:
            ids.append(item)
    return list(dict.fromkeys(ids))


def _store(*, writing: bool = False) -> ResultsStore:
    """The store; to read only, a missing store is an empty one (nothing is created) and read-only media work."""
    from models.results.store import ResultsStore

    return ResultsStore(create=writing)


def _selected(store: ResultsStore, specs: list[str]) -> list[RunRecord]:
    """The runs the specs name; with no specs, the last benchmark (every test of the newest run's job)."""
    if not specs:
        return _last_benchmark(store)
    ids = _run_ids(specs)
    runs = store.list_runs() if ids is None else store.get_runs(_resolve(store, ids))
    if not runs:
        raise ReportError("No runs selected (the results database is empty).")
    return runs


def _last_benchmark(store: ResultsStore) -> list[RunRecord]:
    newest = store.list_runs(limit=1)
    if not newest:
        raise ReportError("No runs stored yet: run `tokenometer bench MODEL` first.")
    last = newest[0]
    runs = sorted((r for r in store.list_runs() if r.job == last.job), key=lambda r: r.id) if last.job else [last]
    ids = [r.id for r in runs]
    named = str(ids[0]) if len(ids) == 1 else f"{ids[0]}-{ids[-1]}" if ids == list(range(ids[0], ids[-1] + 1)) \
        else ",".join(map(str, ids))
    print(f"The last benchmark: {plural(len(runs), 'run')} ({named}).", file=sys.stderr)
    return runs


def _cmd_runs(args: argparse.Namespace) -> int:
    from models.results.compare import settings_label
    from models.results.report_rows import report_row
    from models.results.store import RunFilter

    filters = RunFilter(model=args.model or "", status=args.status or "",
                        imported=True if args.imported else False if args.local else None)
    with _store() as store:
        runs = store.list_runs(filters=filters, limit=args.limit)
    if args.json:
        json.dump([report_row(r) for r in runs], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not runs:
        print("No runs stored yet. Run `tokenometer bench MODEL` first.")
        return 0
    print(f"{'id':>5}  {'time':<19}  {'model':<36}  {'test':<16}  {'t/s':>18}  {'n':>2}  {'settings':<52}  machine")
    for rec in runs:
        r = rec.result
        speed = f"{r.avg_ts:.2f} ± {r.stddev_ts:.2f}" if r.status == "ok" else r.status
        origin = f" (imported from {rec.imported_from})" if rec.imported_from else ""
        # Names come from model files and imported reports: printable() keeps their escape codes off the terminal.
        print(printable(f"{rec.id:>5}  {rec.started_at[:19]:<19}  {rec.model.get('file', '')[:36]:<36}  "
                        f"{r.test[:16]:<16}  {speed:>18}  {len(r.samples_ts):>2}  {settings_label(rec.settings):<52}  "
                        f"{rec.machine_label}{origin}"))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from models.results.compare import compare_runs, format_comparison

    with _store() as store:
        runs = _selected(store, args.runs)
        if args.baseline is not None and args.baseline not in {r.id for r in runs}:
            runs += store.get_runs([args.baseline])
    comparison = compare_runs(runs, baseline=args.baseline)
    if args.json:
        json.dump(comparison.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(printable(format_comparison(comparison), newlines=True))
    if args.cost:
        _print_costs(comparison)
    return 0


def _print_costs(comparison: Comparison) -> None:
    from models.results.cost import format_tokens, row_cost
    from models.results.report_rows import row_labels
    from models.settings import load_settings

    settings = load_settings()
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    cur = printable(settings.currency)
    print(f"\nCost per 1M generated tokens ({settings.electricity_price_per_kwh:g} {cur}/kWh, hardware "
          f"{settings.hardware_cost:,.0f} {cur} over {settings.hardware_lifetime_years:g} y at "
          f"{settings.hardware_hours_per_day:g} h/day; API {settings.api_price_per_mtok:g} {cur}/1M):")
    from models.results.capacity import capacity_for, measurement_cost, started
    from models.results.measurements import list_measurements

    with _store() as store:
        load_tests = list_measurements(store, kind="load")
    for row, label in zip(comparison.rows, row_labels(comparison.rows)):
        name = printable(label)  # unique: says what differs (repo, settings, machine) or numbers the rows
        # A load test of the same file here prices the tokens at the load it served; else one stream's rate.
        tested = capacity_for(load_tests, model_file=str(row.model.get("file", "")), machine_key=row.machine_key)
        at_load = measurement_cost(tested, settings) if tested is not None else None
        if tested is not None and at_load is not None:
            source = "estimated" if at_load.energy_is_estimate else "measured"
            print(f"  {name} [at {at_load.concurrency} people, load test of {started(tested)}]: "
                  f"{at_load.per_mtok_output:.4f} {cur} per 1M output tokens (energy {source}, input processing "
                  f"included); API {at_load.api_per_mtok_output:.4f} {cur} for the same traffic")
            continue
        cost = row_cost(row, settings=settings)
        if cost is None:
            print(f"  {name}: no generation test, or no energy figure and no system_power_watts setting")
            continue
        even = (f"break-even at {format_tokens(cost.break_even_tokens_per_month)} tokens/month"
                if cost.break_even_tokens_per_month is not None else "the API is cheaper than the electricity")
        # Rate and energy both come from this one test: say which.
        print(f"  {name} [{cost.test} at {cost.tokens_per_second:.1f} t/s, assumes one user]: "
              f"{cost.total_per_mtok:.4f} {cur} "
              f"(energy {cost.energy_per_mtok:.4f}"
              f"{', estimated' if cost.energy_is_estimate else ''}, hardware {cost.hardware_per_mtok:.4f}); "
              f"API {cost.api_per_mtok:g} {cur}; {even}; capacity "
              f"{format_tokens(cost.capacity_tokens_per_month)} tokens/month")


def _cmd_report(args: argparse.Namespace) -> int:
    from models.results.reports import export_report, format_of
    from models.settings import load_settings

    fmt = args.format or format_of(args.output)
    from models.results.measurement_report import report_measurements

    with _store() as store:
        runs = _selected(store, args.runs)
        if args.baseline is not None and args.baseline not in {r.id for r in runs}:
            runs += store.get_runs([args.baseline])
        # Load tests and sweeps: every one with `all`, else those of the reported runs' model files.
        measurements = report_measurements(store, runs, everything=bool(args.runs) and _run_ids(args.runs) is None)
    path = export_report(runs, args.output, fmt=fmt, settings=load_settings() if fmt in ("html", "md") else None,
                         baseline=args.baseline, measurements=measurements)
    print(printable(f"Wrote {plural(len(runs), 'run')}{_measurements_said(measurements)} to {path} ({fmt})."))
    return 0


def _measurements_said(measurements: list[Measurement]) -> str:
    """", 2 load tests or sweeps and 1 quality result": what a report carries beside its runs, by kind."""
    kinds = [m.kind for m in measurements]
    capacity = sum(kind in ("batched", "load") for kind in kinds)
    parts = [plural(count, one, many) for count, one, many in (
        (capacity, "load test or sweep", "load tests or sweeps"),
        (kinds.count("quality"), "quality result", "quality results"),
        (kinds.count("answers"), "answer", "answers")) if count]
    if not parts:
        return ""
    return (", " + ", ".join(parts[:-1]) + " and " + parts[-1]) if len(parts) > 1 else " and " + parts[0]


def _cmd_import(args: argparse.Namespace) -> int:
    from models.results.reports import read_report

    records = read_report(args.file)
    with _store(writing=True) as store:
        added, skipped = store.import_runs(records, source=args.file.name)
    machines = sorted({r.machine_label for r in records})
    print(printable(f"Imported {plural(added, 'run')} from {args.file.name}"
                    + (f" ({skipped:,} already present)" if skipped else "")
                    + f"; machine{'s' if len(machines) > 1 else ''}: {', '.join(machines)}."))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this area's subcommands (each sets `handler`)."""
    runs = subparsers.add_parser("runs", help="list the stored benchmark runs, newest first")
    runs.add_argument("--json", action="store_true", help="print llama-bench-shaped JSON records")
    runs.add_argument("--model", help="only models whose file or repo contains this text")
    runs.add_argument("--status", choices=("ok", "failed", "cancelled"))
    origin = runs.add_mutually_exclusive_group()
    origin.add_argument("--imported", action="store_true", help="only runs imported from other machines")
    origin.add_argument("--local", action="store_true", help="only runs made by this store")
    runs.add_argument("--limit", type=int, help="at most this many runs")
    runs.set_defaults(handler=_cmd_runs)

    compare = subparsers.add_parser("compare", help="compare runs side by side (mean ± spread, n)")
    compare.add_argument("runs", nargs="*", metavar="RUN",
                         help="run ids (7, 3-5) or all (default: the last benchmark's runs)")
    compare.add_argument("--baseline", type=int, metavar="RUN", help="show changes against this run's row")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")
    compare.add_argument("--cost", action="store_true",
                         help="add the cost per million generated tokens (inputs from the settings)")
    compare.set_defaults(handler=_cmd_compare)

    report = subparsers.add_parser("report", help="export runs as md, csv, json, jsonl, sql or html")
    report.add_argument("runs", nargs="*", metavar="RUN",
                        help="run ids (7, 3-5) or all (default: the last benchmark's runs)")
    report.add_argument("--baseline", type=int, metavar="RUN",
                        help="the comparison's baseline run (added to the report if not selected)")
    report.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="the report file; its extension picks the format")
    report.add_argument("--format", choices=("md", "csv", "json", "jsonl", "sql", "html"),
                        help="override the format the extension implies")
    report.set_defaults(handler=_cmd_report)

    imp = subparsers.add_parser("import", help="add runs from a json, jsonl or csv report (e.g. another machine's)")
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.set_defaults(handler=_cmd_import)
