"""The event protocol: one dataclass per kind, the kinds derived from them, and the words of progress."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from models.bench.events import (EVENT_KINDS, EVENT_TYPES, PHASES, BenchEvent, Failure, Finished, Log, Memory,
                                 Progress, Quality, QualityChunk, Result, Sample, Started, progress_text)
from models.bench.events import Answer, AnswerPiece, Batched, LoadLevel
from models.bench.runner import BenchRunner
from models.bench.spec import BenchJob, BenchResult, BenchTest

EXAMPLES = (
    Started(job={"model_path": "/m.gguf"}, pid=42),
    Progress(test="pp16", phase="rep", rep=1, of=2, fraction=0.5),
    Sample(test="pp16", rep=0, ns=1000, ts=16e6, perf={"n_eval": 3}),
    Sample(test="tg4", rep=1, ns=2000, ts=2e6),
    Log(level="warning", message="hello", source="llama.cpp"),
    Log(level="error", message="Result not saved"),
    Memory(rss_anon=1, rss_file=2, peak=3, rss=4),
    Result(result=BenchResult(test="pp16", avg_ts=1.5).to_json()),
    Failure(message="no", detail="why", log_tail=["a", "b"]),
    Finished(ok=False, cancelled=True),
    Finished(ok=True),
    QualityChunk(chunk=1, of=4, fraction=0.25, ppl=10.5, ppl_err=1.2, nll=2.35, kld=0.1, same_top=0.9),
    Quality(result={"ppl": 10.5, "kld": None}),
    AnswerPiece(text=" light", n=3),
    Answer(result={"text": "A beacon of light", "ttft_ms": 12.5, "sampling": {"seed": 1234}}),
    Batched(test="pp128+tg128x4", row={"pl": 4}),
    LoadLevel(summary={"rate": 2.0}, records=[{"ttft_ms": 10.0}]),
)


def test_the_kinds_are_the_types_and_every_one_round_trips_the_wire() -> None:
    assert EVENT_KINDS == tuple(t.kind for t in EVENT_TYPES)
    assert len(set(EVENT_KINDS)) == len(EVENT_TYPES) == 14
    assert {type(e) for e in EXAMPLES} == set(EVENT_TYPES)
    for event in EXAMPLES:
        line = event.to_event().to_line()
        parsed = BenchEvent.from_line(line)
        assert parsed is not None and parsed.kind == event.kind
        assert parsed.typed == event, line
    # What the worker leaves out stays out on the wire, as before: no "perf": null, no "cancelled": false.
    assert "perf" not in Sample(test="tg4").to_event().data
    assert Finished(ok=True).to_event().data == {"ok": True}
    assert Result(result=BenchResult(test="pp16").to_json()).bench_result.test == "pp16"


def test_lines_that_are_not_events_are_left_out_and_unknown_kinds_are_named() -> None:
    assert BenchEvent.from_line("llama.cpp printed this") is None
    assert BenchEvent.from_line('{"event": "telemetry", "x": 1}') is None
    assert BenchEvent.from_line("[1, 2]") is None
    with pytest.raises(ValueError, match="telemetry.*started, progress"):
        _ = BenchEvent("telemetry", {}).typed
    # A newer worker's extra key does not break an older reader.
    event = BenchEvent.from_line('{"event":"progress","test":"pp16","phase":"rep","rep":0,"of":2,"fraction":0.1,'
                                 '"eta_s":3}')
    assert event is not None and event.typed == Progress(test="pp16", phase="rep", rep=0, of=2, fraction=0.1)


def test_progress_counts_repetitions_from_one_for_people() -> None:
    # The GUI once said "rep 0/5" where the CLI said "rep 1/5": one wording now, counted from 1.
    assert progress_text(Progress(test="pp512", phase="rep", rep=0, of=5)) == "pp512 rep 1/5"
    assert Progress(test="pp512", phase="rep", rep=4, of=5).text == "pp512 rep 5/5"
    assert Progress(test="pp512 @ d512", phase="depth", rep=0, of=3).text == \
        "pp512 @ d512 filling the context before rep 1/3"
    # TTFT runs one untimed warmup (rep 0), then its timed runs 1..of.
    assert Progress(test="ttft", phase="ttft", rep=0, of=3).text == "TTFT warmup"
    assert Progress(test="ttft", phase="ttft", rep=3, of=3).text == "TTFT 3/3"
    assert Progress(test="", phase="load", of=3).text == "loading the model"
    assert Progress(test="tg4", phase="done", rep=2, of=2).text == "tg4 done"
    assert all("rep 0/" not in Progress(test="t", phase=p, rep=0, of=2).text for p in PHASES)


def test_every_event_the_real_worker_sends_fits_its_type(make_job: Callable[..., BenchJob]) -> None:
    events: list[BenchEvent] = []
    job = dataclasses.replace(make_job(tests=(BenchTest(8, 0, n_depth=8), BenchTest(0, 2)), n_gpu_layers=0),
                              ttft_prompt_tokens=16)
    BenchRunner(on_event=lambda _job, event: events.append(event)).run([job])
    typed = [event.typed for event in events]
    assert {type(t) for t in typed} >= {Started, Progress, Sample, Memory, Result, Finished}
    phases = {t.phase for t in typed if isinstance(t, Progress)}
    # The worker closes each test with "done", which the old schema did not list.
    assert phases <= set(PHASES) and {"load", "warmup", "depth", "rep", "done", "ttft"} <= phases
    for t in typed:
        if isinstance(t, Progress):
            assert 0.0 <= t.fraction <= 1.0 and t.text
        # No key the worker sends is lost in its dataclass (the runner's memory samples included).
    for event, t in zip(events, typed):
        names = {f.name for f in dataclasses.fields(t)}
        assert set(event.data) <= names, (event.kind, set(event.data) - names)
    assert isinstance(typed[-1], Finished) and typed[-1].ok
