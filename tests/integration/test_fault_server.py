"""Checks that tests/fixtures/fault_server.py puts on the wire what it promises.

Each scenario is exercised with plain httpx so the assertions document exactly
what an httpx-based client sees (which exception class, after which chunks).
Everything runs against 127.0.0.1 with sub-second timeouts.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from tests.fixtures.fault_server import FaultServer

# Short read timeout: long enough for loopback, short enough to keep the stall
# test fast. Connect/write/pool stay generous so only the read can time out.
TIMEOUT = httpx.Timeout(5.0, read=0.3)
CHAT_BODY: dict[str, Any] = {
    "model": "stand-in-model",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}
HEADERS = {"Authorization": "Bearer sk-test", "User-Agent": "Switchboard-test/1.0"}


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    # One client for the module: building its SSL context costs ~50 ms, and
    # every response is "Connection: close", so nothing leaks between tests.
    with httpx.Client(timeout=TIMEOUT, headers=HEADERS) as c:
        yield c


def _collect(resp: httpx.Response, events: list[str], comments: list[str] | None = None) -> None:
    """Append each SSE ``data:`` payload to ``events`` as it arrives.

    Appending as we go (rather than returning a list) keeps what arrived
    before an exception visible to the test.
    """
    for line in resp.iter_lines():
        if line.startswith("data: "):
            events.append(line[len("data: ") :])
        elif line.startswith(":") and comments is not None:
            comments.append(line)


def _deltas(events: list[str]) -> str:
    out = []
    for e in events:
        if e == "[DONE]":
            continue
        for choice in json.loads(e)["choices"]:
            out.append(choice["delta"].get("content") or "")
    return "".join(out)


def _stream(
    client: httpx.Client, server: FaultServer, **body: Any
) -> AbstractContextManager[httpx.Response]:
    # Returned un-entered; callers use it as a context manager.
    return client.stream("POST", f"{server.base_url}/chat/completions", json={**CHAT_BODY, **body})


# ---------------------------------------------------------------- /models


def test_models_lists_configured_models(client: httpx.Client) -> None:
    with FaultServer(models=["a", "b"]) as srv:
        resp = client.get(f"{srv.base_url}/models")
    assert resp.status_code == 200
    assert resp.json() == {
        "object": "list",
        "data": [
            {"id": "a", "object": "model", "owned_by": "stand-in"},
            {"id": "b", "object": "model", "owned_by": "stand-in"},
        ],
    }
    assert resp.headers["connection"] == "close"
    req = srv.requests[0]
    assert (req.method, req.path, req.body) == ("GET", "/v1/models", b"")
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.headers["user-agent"] == "Switchboard-test/1.0"


def test_unknown_path_is_openai_style_404(server: FaultServer, client: httpx.Client) -> None:
    resp = client.get(f"{server.base_url}/nope")
    assert resp.status_code == 404
    assert "message" in resp.json()["error"]


# ---------------------------------------------------------------- ok


def test_ok_stream_default(server: FaultServer, client: httpx.Client) -> None:
    events: list[str] = []
    with _stream(client, server) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/event-stream"
        assert resp.headers["transfer-encoding"] == "chunked"
        _collect(resp, events)
    assert events[-1] == "[DONE]"
    assert _deltas(events) == "Hello, world."
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks[:4]] == [None, None, None, "stop"]
    # OpenAI include_usage shape: last chunk has empty choices and usage.
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
    # Request recorded with headers and the raw body.
    (req,) = server.requests
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.headers["content-type"] == "application/json"
    assert req.json() == CHAT_BODY
    assert json.loads(req.body) == CHAT_BODY


def test_ok_stream_options_and_comments(server: FaultServer, client: httpx.Client) -> None:
    server.set_scenario("ok", chunks=["a", "b", "c"], usage=None, comments=True, delay_s=0.05)
    events: list[str] = []
    comments: list[str] = []
    start = time.monotonic()
    with _stream(client, server) as resp:
        _collect(resp, events, comments)
    assert time.monotonic() - start >= 0.1  # two gaps between three chunks
    assert _deltas(events) == "abc"
    assert events[-1] == "[DONE]"
    assert all(json.loads(e)["choices"] for e in events[:-1])  # no usage chunk
    assert comments and set(comments) == {": OPENROUTER PROCESSING"}


def test_ok_non_streaming(server: FaultServer, client: httpx.Client) -> None:
    resp = client.post(f"{server.base_url}/chat/completions", json={**CHAT_BODY, "stream": False})
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello, world."}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] == 9


# ---------------------------------------------------------------- faults


def test_close_mid_stream_raises_remote_protocol_error(
    server: FaultServer, client: httpx.Client
) -> None:
    server.set_scenario("close_mid_stream", chunks=["Hel", "lo"])
    events: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"),
        _stream(client, server) as resp,
    ):
        assert resp.status_code == 200
        _collect(resp, events)
    assert _deltas(events) == "Hello"
    assert "[DONE]" not in events


def test_close_mid_body_non_streaming(server: FaultServer, client: httpx.Client) -> None:
    server.set_scenario("close_mid_stream")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(f"{server.base_url}/chat/completions", json={**CHAT_BODY, "stream": False})


def test_reset_mid_stream_raises_read_error(server: FaultServer, client: httpx.Client) -> None:
    server.set_scenario("reset_mid_stream", chunks=["Hel", "lo"])
    events: list[str] = []
    with pytest.raises(httpx.ReadError) as info, _stream(client, server) as resp:
        assert resp.status_code == 200
        _collect(resp, events)
    # ReadError, not its RemoteProtocolError sibling: the OS reported ECONNRESET.
    assert type(info.value) is httpx.ReadError
    assert "reset" in str(info.value).lower()  # "[Errno 104] Connection reset by peer"
    assert _deltas(events) == "Hello"


def test_reset_mid_body_non_streaming(server: FaultServer, client: httpx.Client) -> None:
    server.set_scenario("reset_mid_stream")
    with pytest.raises(httpx.ReadError):
        client.post(f"{server.base_url}/chat/completions", json={**CHAT_BODY, "stream": False})


def test_stall_mid_stream_read_timeout_and_prompt_stop(client: httpx.Client) -> None:
    srv = FaultServer()
    srv.start()
    try:
        srv.set_scenario("stall_mid_stream", chunks=["Hel", "lo"])  # stall_s=30 default
        events: list[str] = []
        with pytest.raises(httpx.ReadTimeout), _stream(client, srv) as resp:
            assert resp.status_code == 200
            _collect(resp, events)
        assert _deltas(events) == "Hello"
    finally:
        srv.stop()
        assert not srv._handlers  # stop() ended the 30 s stall instead of waiting it out


def test_stop_with_stalled_client_still_connected() -> None:
    # The client is still waiting on the stalled stream when stop() runs.
    srv = FaultServer().start()
    srv.set_scenario("stall_mid_stream")
    with httpx.Client(timeout=httpx.Timeout(5.0)) as c, _stream(c, srv) as resp:
        lines = resp.iter_lines()
        assert next(lines).startswith("data: ")
        srv.stop()
        assert not srv._handlers
        # The stalled stream is dropped (FIN, chunked body unterminated),
        # not completed.
        with pytest.raises(httpx.RemoteProtocolError):
            list(lines)


def test_stop_with_idle_connection_is_prompt() -> None:
    # A client that connects but never sends a request parks a handler in
    # recv(); stop() must not wait for it.
    srv = FaultServer().start()
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        deadline = time.monotonic() + 2
        while not srv._conns and time.monotonic() < deadline:  # wait for accept()
            time.sleep(0.005)
        assert srv._conns
        srv.stop()
        assert not srv._handlers  # the handler parked in recv() did not outlive stop()
        assert sock.recv(1) == b""  # server closed its end
    assert srv.requests == []


def test_short_stall_then_completes(server: FaultServer, client: httpx.Client) -> None:
    server.set_scenario("stall_mid_stream", chunks=["a"], stall_s=0.1)
    events: list[str] = []
    with _stream(client, server) as resp:
        _collect(resp, events)
    assert _deltas(events) == "a"
    assert events[-1] == "[DONE]"


def test_malformed_sse_is_valid_http(server: FaultServer, client: httpx.Client) -> None:
    server.set_scenario("malformed_sse")
    events: list[str] = []
    with _stream(client, server) as resp:  # httpx itself raises nothing
        _collect(resp, events)
    assert events[1:] == ["{this is not json", "[DONE]"]
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "Hello"
    with pytest.raises(json.JSONDecodeError):
        json.loads(events[1])


def test_error_mid_stream(server: FaultServer, client: httpx.Client) -> None:
    server.set_scenario("error_mid_stream", chunks=["Hi"], error_message="boom")
    events: list[str] = []
    with _stream(client, server) as resp:
        assert resp.status_code == 200
        _collect(resp, events)
    assert events[-1] == "[DONE]"
    err = json.loads(events[-2])
    assert err["error"] == {"message": "boom", "code": 502}
    assert err["choices"][0]["finish_reason"] == "error"
    assert _deltas(events) == "Hi"


# ---------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "invalid_api_key"),
        (404, "model_not_found"),
        (400, "context_length_exceeded"),
        (500, None),
        (503, None),
    ],
)
def test_status_default_error_bodies(
    server: FaultServer, client: httpx.Client, status: int, code: str | None
) -> None:
    server.set_scenario("status", status=status)
    resp = client.post(f"{server.base_url}/chat/completions", json=CHAT_BODY)
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    err = resp.json()["error"]
    assert err["code"] == code
    assert err["message"] and err["type"]


def test_status_429_with_retry_after(server: FaultServer, client: httpx.Client) -> None:
    server.set_scenario("status", status=429, headers={"Retry-After": "7"})
    resp = client.post(f"{server.base_url}/chat/completions", json=CHAT_BODY)
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "7"
    assert resp.json()["error"]["code"] == "rate_limit_exceeded"


def test_status_applies_to_models_and_custom_body(
    server: FaultServer, client: httpx.Client
) -> None:
    server.set_scenario("status", status=401, body={"detail": "nope"})
    resp = client.get(f"{server.base_url}/models")
    assert resp.status_code == 401
    assert resp.json() == {"detail": "nope"}
    server.set_scenario("status", status=404, code="custom", message="gone")
    err = client.get(f"{server.base_url}/models").json()["error"]
    assert (err["code"], err["message"]) == ("custom", "gone")
    server.set_scenario("ok")
    assert client.get(f"{server.base_url}/models").status_code == 200
    assert [r.path for r in server.requests] == ["/v1/models"] * 3


# ---------------------------------------------------------------- bookkeeping


def test_requests_recorded_in_order(server: FaultServer, client: httpx.Client) -> None:
    client.get(f"{server.base_url}/models")
    client.post(f"{server.base_url}/chat/completions", json={**CHAT_BODY, "stream": False})
    client.post(f"{server.base_url}/chat/completions", content=b"not json")
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/chat/completions"),
    ]
    assert server.requests[2].body == b"not json"


def test_set_scenario_rejects_typos(server: FaultServer) -> None:
    with pytest.raises(ValueError):
        server.set_scenario("okay")
    with pytest.raises(TypeError):
        server.set_scenario("ok", chunk=["x"])
    with pytest.raises(TypeError):
        server.set_scenario("status")
