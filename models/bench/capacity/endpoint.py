"""The same load against a running OpenAI-compatible server that streams (llama-server, Ollama, LM Studio, vLLM)."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx2

from models.bench.capacity.profile import RequestShape
from models.bench.capacity.serving import RequestRecord
from models.errors import BenchmarkError

log = logging.getLogger(__name__)

Api = Literal["completions", "chat"]
MAX_IN_FLIGHT = 256  # an open load never has more requests outstanding than this
MAX_LINE = 1 << 20  # an SSE line longer than this is a broken stream, not a token
# Plain prose repeated to about the asked length (an English word is about 1.3 tokens for common tokenizers);
# there is no tokenizer on this side, so the server's own usage figures replace the estimate where it sends them.
PROMPT_TEXT = ("The river town kept its market on the old stone bridge, where farmers sold apples, bread and wool "
               "every Saturday morning. When the spring floods came, the traders moved their stalls up the hill "
               "to the church square, and the children carried baskets between the two places all day. ").split()
TOKENS_PER_WORD = 1.3


def prompt_of(tokens: int) -> str:
    """About `tokens` tokens of prose, ending with a request to go on writing (so a chat model answers at length)."""
    words = max(1, round(tokens / TOKENS_PER_WORD) - 8)
    text = " ".join(PROMPT_TEXT[i % len(PROMPT_TEXT)] for i in range(words))
    return text + " Continue this story at length."


@dataclass(frozen=True)
class Endpoint:
    """Where to send the load: the server's base URL (…/v1 is added when missing), the API, the model name."""

    url: str
    api: Api = "completions"
    model: str = ""
    api_key: str | None = None
    connect_timeout_s: float = 5.0
    first_token_timeout_s: float = 120.0  # no byte for this long is a server that never answers
    request_timeout_s: float = 600.0

    @property
    def path(self) -> str:
        base = self.url.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        return base + ("/chat/completions" if self.api == "chat" else "/completions")

    def body(self, shape: RequestShape) -> dict[str, Any]:
        prompt = prompt_of(shape.prompt_tokens)
        body: dict[str, Any] = {"max_tokens": shape.output_tokens, "stream": True, "temperature": 0.0,
                                # Ask for the full length (vLLM, llama-server): a short answer would flatter TPOT.
                                "ignore_eos": True, "stream_options": {"include_usage": True}}
        if self.model:
            body["model"] = self.model
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return body


def _http_error(status: int, text: str, endpoint: Endpoint) -> str:
    snippet = " ".join(text.split())[:200]
    meaning = {401: "the server refused the API key (401)", 403: "the server refused access (403)",
               404: f"{endpoint.path} does not exist there (404): is it an OpenAI-compatible server, and is the "
                    "model name right?",
               429: "the server is rate limiting (429)"}.get(status)
    if meaning is None:
        meaning = f"the server failed (HTTP {status})" if status >= 500 else f"the server refused the request (HTTP {status})"
    return f"{meaning}{': ' + snippet if snippet else ''}"


def _chunk_text(event: dict[str, Any]) -> str:
    choices = event.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return ""
    choice = choices[0]
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return str(delta.get("content") or delta.get("reasoning_content") or "")
    return str(choice.get("text") or "")


def send_request(client: httpx2.Client, endpoint: Endpoint, shape: RequestShape, record: RequestRecord,
                 origin: float, clock: Callable[[], float] = time.perf_counter) -> None:
    """Send one streaming request and fill `record` (times relative to `origin`); failures go in record.error."""
    headers = {"Accept": "text/event-stream"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    done = False
    try:
        with client.stream("POST", endpoint.path, json=endpoint.body(shape), headers=headers) as response:
            if response.status_code != 200:
                record.error = _http_error(response.status_code, response.read().decode("utf-8", "replace"),
                                           endpoint)
                return
            for line in response.iter_lines():
                if len(line) > MAX_LINE:
                    record.error = "malformed event stream: a line of over 1 MiB"
                    return
                if not line.startswith("data:"):
                    continue  # comments, event names, keep-alives
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    event = json.loads(data)
                except ValueError:
                    record.error = f"malformed event stream: {data[:80]!r} is not JSON"
                    return
                if not isinstance(event, dict):
                    record.error = f"malformed event stream: {data[:80]!r} is not an object"
                    return
                if "error" in event:
                    record.error = f"the server reported an error: {str(event['error'])[:200]}"
                    return
                if _chunk_text(event):
                    record.token_times.append(clock() - origin)
                usage = event.get("usage")
                if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
                    record.prompt_tokens = usage["prompt_tokens"]
        if not done:
            record.error = "the stream ended before the server said it was done ([DONE] missing)"
        elif not record.token_times:
            record.error = "the server ended the answer without sending a token"
    except httpx2.ConnectError as error:
        record.error = f"cannot connect to {endpoint.url}: {error}"
    except httpx2.TimeoutException:
        what = "a first token" if not record.token_times else "the next token"
        record.error = f"no {what} within {endpoint.first_token_timeout_s:g} s"
    except httpx2.HTTPError as error:
        record.error = f"the connection failed mid-stream: {error}"
    finally:
        if not record.error or record.token_times:
            record.finished_at = clock() - origin


def run_endpoint_level(endpoint: Endpoint, shapes: Sequence[RequestShape], arrivals: Sequence[float], *,
                       concurrency: int, closed_loop: bool, should_stop: Callable[[], bool] = lambda: False,
                       clock: Callable[[], float] = time.perf_counter) -> tuple[list[RequestRecord], float]:
    """One load level against the server: `concurrency` clients in a closed loop, or requests sent at their
    arrival times (at most `concurrency` in flight, the rest wait and that wait counts in their TTFT)."""
    if concurrency < 1:
        raise BenchmarkError(f"Concurrency must be at least 1, got {concurrency}.")
    timeout = httpx2.Timeout(endpoint.request_timeout_s, connect=endpoint.connect_timeout_s,
                             read=endpoint.first_token_timeout_s)
    limits = httpx2.Limits(max_connections=min(concurrency, MAX_IN_FLIGHT))
    records = [RequestRecord(prompt_tokens=s.prompt_tokens, max_tokens=s.output_tokens, sent_at=0.0) for s in shapes]
    todo: queue.Queue[int] = queue.Queue()
    for index in range(len(shapes)):
        todo.put(index)
    origin = clock()
    with httpx2.Client(timeout=timeout, limits=limits) as client:
        def client_loop() -> None:
            while not should_stop():
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    return
                if not closed_loop:
                    delay = arrivals[index] - (clock() - origin)
                    while delay > 0 and not should_stop():
                        time.sleep(min(delay, 0.05))
                        delay = arrivals[index] - (clock() - origin)
                    records[index].sent_at = arrivals[index]
                else:
                    records[index].sent_at = clock() - origin
                send_request(client, endpoint, shapes[index], records[index], origin, clock)

        threads = [threading.Thread(target=client_loop, name=f"tokenometer-load-{i}", daemon=True)
                   for i in range(min(concurrency, MAX_IN_FLIGHT, max(1, len(shapes))))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for record in records:
        if record.finished_at is None and not record.error:
            record.error = "cancelled"  # never sent: the run was stopped
    ends = [r.finished_at for r in records if r.finished_at is not None]
    return records, max(ends) if ends else 0.0
