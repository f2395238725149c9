"""The load generator against a real llama-cpp-python server on 127.0.0.1, and against servers that misbehave."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from models.bench.endpoint import Endpoint, run_endpoint_level
from models.bench.load_profile import RequestShape, arrival_times
from models.bench.serving import Slo, summarize_load
from models.errors import BenchmarkError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server with the starter model, on a free loopback port.

    It serves one request at a time; by default a new request interrupts the one streaming (that answer then ends
    with no tokens), so requests queue instead here, as they do on a server with one slot.
    """
    port = _free_port()
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(starter_model),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "1",
                             "--interrupt_requests", "False",
                             "--verbose", "False"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, "llama_cpp.server exited at start"
            try:
                if httpx2.get(f"{url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("llama_cpp.server did not answer within 120 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


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


class _Faulty(http.server.BaseHTTPRequestHandler):
    """A server for one fault: the path picks it (set per test through the Endpoint URL)."""

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        fault = self.path.split("/")[1]
        if fault in ("401", "404", "429", "503"):
            body = b'{"error": "nope"}'
            self.send_response(int(fault))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunk = b'data: {"choices": [{"text": "hi"}]}\n\n'
        if fault == "cut":
            self.wfile.write(chunk * 2)
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the stream stops without [DONE]
        elif fault == "garbage":
            self.wfile.write(chunk + b"data: {not json\n\n")
        elif fault == "silent":
            time.sleep(3)  # never a first token within the client's 1 s
        elif fault == "ok":
            self.wfile.write(chunk * 3 + b"data: [DONE]\n\n")


@pytest.fixture(scope="module")
def faulty_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Faulty)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


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
    records, _ = run_endpoint_level(Endpoint(f"http://127.0.0.1:{_free_port()}", connect_timeout_s=1.0),
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
