"""The load generator against a real llama-cpp-python server on 127.0.0.1, and against servers that misbehave."""

from __future__ import annotations

import json
import time

import pytest

from models.bench.capacity.endpoint import Endpoint, run_endpoint_level
from models.bench.capacity.profile import RequestShape, arrival_times
from models.bench.capacity.serving import Slo, summarize_load
from models.errors import BenchmarkError
from tests.models.bench.capacity.servers import faulty_server, free_port, llama_server  # noqa: F401


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_real_server_streams_every_request(llama_server: str, api: str) -> None:
    shapes = [RequestShape(24, 6), RequestShape(16, 4), RequestShape(20, 5)]
    records, duration = run_endpoint_level(Endpoint(llama_server, api=api), shapes, arrival_times(3, rate=None),
                                           concurrency=2, closed_loop=True)
    assert [r.error for r in records] == ["", "", ""]
    for record, shape in zip(records, shapes):
        assert 1 <= record.output_tokens <= shape.output_tokens
        assert record.prompt_tokens > 1  # the server's own count replaced the estimate
        assert record.ttft is not None and 0 < record.ttft <= record.e2e  # type: ignore[operator]
    summary = summarize_load(records, duration_s=duration, slo=Slo(), concurrency=2)
    assert summary.completed == 3 and summary.output_throughput > 0


@pytest.mark.parametrize(("fault", "message"), [
    ("401", "refused the API key (401)"),
    ("404", "does not exist there (404)"),
    ("429", "rate limiting (429)"),
    ("503", "server failed (HTTP 503)"),
    ("cut", "[DONE] missing"),
    ("garbage", "malformed event stream"),
    ("silent", "no a first token within 1 s"),
])
def test_each_fault_is_named_and_nothing_hangs(faulty_server: str, fault: str, message: str) -> None:
    endpoint = Endpoint(f"{faulty_server}/{fault}", first_token_timeout_s=1.0, request_timeout_s=5.0)
    started = time.monotonic()
    records, _ = run_endpoint_level(endpoint, [RequestShape(8, 3)] * 2, [0.0, 0.0], concurrency=2, closed_loop=True)
    assert time.monotonic() - started < 10
    assert all(message in r.error for r in records), [r.error for r in records]
    summary = summarize_load(records, duration_s=1.0, slo=Slo(), concurrency=2)
    assert summary.failed == 2 and not summary.slo_met


def test_tokens_that_arrived_before_a_cut_are_kept(faulty_server: str) -> None:
    records, _ = run_endpoint_level(Endpoint(f"{faulty_server}/cut"), [RequestShape(8, 3)], [0.0], concurrency=1,
                                    closed_loop=True)
    assert records[0].output_tokens == 2 and records[0].finished_at is not None and not records[0].ok


def test_endpoint_down_and_bad_concurrency() -> None:
    records, _ = run_endpoint_level(Endpoint(f"http://127.0.0.1:{free_port()}", connect_timeout_s=1.0),
                                    [RequestShape(8, 3)], [0.0], concurrency=1, closed_loop=True)
    assert records[0].error.startswith("cannot connect to http://127.0.0.1:")
    with pytest.raises(BenchmarkError, match="at least 1"):
        run_endpoint_level(Endpoint("http://127.0.0.1:1"), [], [], concurrency=0, closed_loop=True)


def test_open_load_sends_at_arrival_times(faulty_server: str) -> None:
    records, duration = run_endpoint_level(Endpoint(f"{faulty_server}/ok"), [RequestShape(8, 3)] * 3,
                                           [0.0, 0.3, 0.6], concurrency=3, closed_loop=False)
    assert [r.sent_at for r in records] == [0.0, 0.3, 0.6]
    assert all(r.ok and r.token_times[0] >= r.sent_at for r in records)
    assert duration >= 0.6
    json.dumps([r.to_json() for r in records])  # records travel as JSON
