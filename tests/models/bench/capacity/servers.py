"""Servers the load tests send to: llama-cpp-python's own OpenAI-compatible server, and one that misbehaves."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server with the starter model, on a free loopback port.

    It serves one request at a time; by default a new request interrupts the one streaming (that answer then ends
    with no tokens), so requests queue instead here, as they do on a server with one slot.
    """
    port = free_port()
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


