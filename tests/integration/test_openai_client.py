"""The streaming client against a stand-in server that misbehaves on demand: every fault
becomes a typed error that keeps the text already received."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import sys
import threading
import time
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import trustme

from app.core import errors
from app.core.llm import openai_client
from app.core.llm.openai_client import (
    Delta,
    Finished,
    OpenAIClient,
    Timeouts,
    normalise_base_url,
)
from tests.fixtures.fault_server import FaultServer

HELLO = [{"role": "user", "content": "hi"}]


async def collect(client: OpenAIClient, messages: list[dict[str, str]] = HELLO,
                  **kw: object) -> tuple[str, Finished]:
    parts, finished = [], None
    try:
        async for event in client.stream_chat(messages, model="stand-in-model", **kw):  # type: ignore[arg-type]
            if isinstance(event, Delta):
                parts.append(event.text)
            else:
                finished = event
    finally:
        await client.aclose()
    assert finished is not None
    assert finished.text == "".join(parts)
    return "".join(parts), finished


def fail(client: OpenAIClient) -> errors.SwitchboardError:
    with pytest.raises(errors.SwitchboardError) as caught:
        asyncio.run(collect(client))
    return caught.value


def client_for(server: FaultServer, **kw: object) -> OpenAIClient:
    return OpenAIClient(server.base_url, token="secret-token", **kw)  # type: ignore[arg-type]


def test_streams_text_usage_and_sends_the_token(fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", chunks=["Hel", "lo", " there"], comments=True)
    text, finished = asyncio.run(collect(client_for(fault_server), max_tokens=64))
    assert text == "Hello there"
    assert finished.finish_reason == "stop"
    assert finished.usage is not None and finished.usage.total_tokens == 9
    request = fault_server.requests[-1]
    assert request.headers["authorization"] == "Bearer secret-token"
    assert request.headers["user-agent"].startswith("Switchboard/")
    body = request.json()
    assert body["stream"] is True and body["max_tokens"] == 64
    assert body["stream_options"] == {"include_usage": True}


def test_cost_is_read_in_micro_dollars(fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", usage={"prompt_tokens": 1, "completion_tokens": 2,
                                           "total_tokens": 3, "cost": 0.0012345})
    _, finished = asyncio.run(collect(client_for(fault_server)))
    assert finished.usage is not None and finished.usage.cost_micro_usd == 1235


def test_connection_closed_mid_stream_keeps_the_partial_answer(fault_server: FaultServer) -> None:
    fault_server.set_scenario("close_mid_stream", chunks=["Part", "ial"])
    error = fail(client_for(fault_server))
    assert isinstance(error, errors.StreamInterrupted)
    assert error.partial == "Partial"


def test_connection_reset_mid_stream_keeps_the_partial_answer(fault_server: FaultServer) -> None:
    fault_server.set_scenario("reset_mid_stream", chunks=["Part", "ial"])
    error = fail(client_for(fault_server))
    assert isinstance(error, errors.StreamInterrupted)
    assert error.partial == "Partial"


def test_a_stall_mid_stream_times_out_with_the_partial_answer(fault_server: FaultServer) -> None:
    fault_server.set_scenario("stall_mid_stream", chunks=["Part", "ial"], stall_s=30)
    error = fail(client_for(fault_server, timeouts=Timeouts(first_token=5, stall=0.3)))
    assert isinstance(error, errors.StreamStalled)
    assert error.partial == "Partial"
    assert "0.3 s" in error.detail  # the stall limit, not the first-token one


def test_no_first_token_in_time_is_a_stall(fault_server: FaultServer) -> None:
    fault_server.set_scenario("stall_mid_stream", chunks=[], stall_s=30)
    error = fail(client_for(fault_server, timeouts=Timeouts(first_token=0.3, stall=10)))
    assert isinstance(error, errors.StreamStalled) and error.partial == ""
    assert "no answer" in error.detail


def test_a_stall_after_the_first_word_is_caught_at_the_stall_limit(
        fault_server: FaultServer) -> None:
    fault_server.set_scenario("stall_mid_stream", chunks=["Part"], stall_s=30)
    started = time.monotonic()
    error = fail(client_for(fault_server, timeouts=Timeouts(first_token=60, stall=0.3)))
    assert isinstance(error, errors.StreamStalled)
    assert time.monotonic() - started < 10  # well short of the first-token limit


def test_a_slow_reader_is_not_a_stall(fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", chunks=["Slow ", "and ", "steady"])
    client = client_for(fault_server, timeouts=Timeouts(first_token=0.3, stall=0.3))

    async def read_slowly() -> str:
        text = ""
        try:
            async for event in client.stream_chat(HELLO, model="m"):
                if isinstance(event, Delta):
                    text += event.text
                    await asyncio.sleep(0.5)  # the reader's time, not the server's silence
        finally:
            await client.aclose()
        return text

    assert asyncio.run(read_slowly()) == "Slow and steady"


@pytest.mark.parametrize(("status", "options", "expected"), [
    (401, {}, errors.AuthFailed),
    (403, {}, errors.AuthFailed),
    (404, {}, errors.ModelNotFound),
    (404, {"code": None, "message": "Not Found"}, errors.MalformedResponse),
    (400, {}, errors.ContextTooLong),
    (400, {"code": None, "message": "This model's maximum context length is 2048 tokens"},
     errors.ContextTooLong),
    (400, {"code": "invalid_request", "message": "bad temperature"}, errors.RequestRejected),
    (500, {}, errors.ServerError),
    (503, {}, errors.ServerError),
])
def test_http_errors_become_typed_errors(fault_server: FaultServer, status: int,
                                         options: dict[str, object],
                                         expected: type[errors.SwitchboardError]) -> None:
    fault_server.set_scenario("status", status=status, **options)
    error = fail(client_for(fault_server))
    assert type(error) is expected
    assert f"HTTP {status}" in error.detail


def test_rate_limit_carries_retry_after(fault_server: FaultServer) -> None:
    fault_server.set_scenario("status", status=429, headers={"Retry-After": "7"})
    error = fail(client_for(fault_server))
    assert isinstance(error, errors.RateLimited) and error.retry_after == 7
    assert "7 seconds" in error.hint


def test_malformed_sse_keeps_the_partial_answer(fault_server: FaultServer) -> None:
    fault_server.set_scenario("malformed_sse", chunks=["Good "])
    error = fail(client_for(fault_server))
    assert isinstance(error, errors.MalformedResponse) and error.partial == "Good "


def test_half_a_character_from_the_node_can_be_stored_and_sent_on(
        fault_server: FaultServer) -> None:
    # A tiny model's tokenizer can end a chunk inside a character; the node then sends a
    # lone surrogate escape ("\\ude1b"), which neither SQLite nor the next request can encode.
    fault_server.set_scenario("ok", chunks=["Step ", "r\ude1b{", " done"])
    text, _ = asyncio.run(collect(client_for(fault_server)))
    assert text == "Step r\ufffd{ done"

    fault_server.set_scenario("ok", chunks=["Fine"])
    reply, _ = asyncio.run(collect(client_for(fault_server),
                                   [{"role": "user", "content": text}]))
    assert reply == "Fine"
    assert fault_server.requests[-1].json()["messages"][0]["content"] == text


def test_half_a_character_in_a_question_is_sent_as_a_replacement(
        fault_server: FaultServer) -> None:
    # Pasted or extracted text with a lone surrogate: the request still goes, and says so.
    reply, _ = asyncio.run(collect(client_for(fault_server),
                                   [{"role": "user", "content": "Odd \udcf9 text"}]))
    assert reply
    assert fault_server.requests[-1].json()["messages"][0]["content"] == "Odd \ufffd text"


def test_an_error_event_mid_stream(fault_server: FaultServer) -> None:
    fault_server.set_scenario("error_mid_stream", chunks=["So far"], error_message="upstream died")
    error = fail(client_for(fault_server))
    assert isinstance(error, errors.ServerError)
    assert error.partial == "So far" and "upstream died" in error.detail


def test_nobody_listening_is_node_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the request: nobody listens
    error = fail(OpenAIClient(f"http://127.0.0.1:{port}/v1"))
    assert isinstance(error, errors.NodeUnreachable) and error.partial == ""


def test_cancelling_closes_the_stream(fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", chunks=["x"] * 100, delay_s=0.05)
    client = client_for(fault_server)
    received: list[str] = []

    async def consume() -> None:
        async for event in client.stream_chat(HELLO, model="m"):
            if isinstance(event, Delta):
                received.append(event.text)

    async def main() -> None:
        task = asyncio.create_task(consume())
        while len(received) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.aclose()
        # The server sees the client hang up; a stream left open would run to its end.
        while not fault_server.hung_up:
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert 3 <= len(received) < 100


def test_list_models(fault_server: FaultServer) -> None:
    async def main() -> list[str]:
        client = client_for(fault_server)
        try:
            return await client.list_models()
        finally:
            await client.aclose()

    assert asyncio.run(main()) == ["stand-in-model"]


def test_the_proxy_from_the_environment_is_used(fault_server: FaultServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{fault_server.port}")
    # No such host exists: only a proxy can answer for it.
    client = OpenAIClient("http://office-node.invalid:8080/v1", token="t")
    text, _ = asyncio.run(collect(client))
    assert text == "Hello, world."
    assert fault_server.requests[-1].target == \
        "http://office-node.invalid:8080/v1/chat/completions"


def test_base_url_gets_v1_when_given_bare() -> None:
    assert normalise_base_url("http://node:8080") == "http://node:8080/v1"
    assert normalise_base_url("http://node:8080/") == "http://node:8080/v1"
    assert normalise_base_url("https://gw.example/openai/v1/") == "https://gw.example/openai/v1"


# TLS -------------------------------------------------------------------------------------

@pytest.fixture
def https_node(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A tiny HTTPS model-list server with a certificate from a private office CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b'{"data": [{"id": "tls-model"}]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ca_file = tmp_path / "office-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield f"https://127.0.0.1:{server.server_address[1]}/v1", ca_file
    server.shutdown()
    server.server_close()


def list_models(client: OpenAIClient) -> list[str]:
    async def main() -> list[str]:
        try:
            return await client.list_models()
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_tls_with_an_unknown_ca_is_refused_clearly(https_node: tuple[str, Path]) -> None:
    url, _ca = https_node
    with pytest.raises(errors.TLSFailed) as caught:
        list_models(OpenAIClient(url))
    assert "certificate" in caught.value.title


def test_tls_with_the_office_ca_bundle_works(https_node: tuple[str, Path]) -> None:
    url, ca = https_node
    assert list_models(OpenAIClient(url, ca_bundle=str(ca))) == ["tls-model"]


def test_a_missing_ca_bundle_is_a_clear_error(https_node: tuple[str, Path]) -> None:
    url, _ca = https_node
    with pytest.raises(errors.TLSFailed, match="can't be used"):
        list_models(OpenAIClient(url, ca_bundle="/nonexistent/ca.pem"))


# Review fixes ----------------------------------------------------------------------------

def test_the_answer_is_not_joined_once_per_chunk(fault_server: FaultServer) -> None:
    """Joining everything received on every chunk made long answers quadratic.

    Counted, not timed: a profile hook counts `str.join` calls made from this module
    while 300 chunks stream; one join for `Finished` (plus slack) is all there should be.
    """
    fault_server.set_scenario("ok", chunks=["x"] * 300)
    joins = 0

    def count(frame: types.FrameType, event: str, arg: object) -> None:
        nonlocal joins
        if (event == "c_call" and getattr(arg, "__name__", "") == "join"
                and frame.f_code.co_filename == openai_client.__file__):
            joins += 1

    sys.setprofile(count)
    try:
        text, _ = asyncio.run(collect(client_for(fault_server)))
    finally:
        sys.setprofile(None)
    assert text == "x" * 300
    assert joins <= 3


def test_the_token_and_headers_stay_out_of_repr() -> None:
    client = OpenAIClient("http://node:8080", token="secret-token",
                          headers={"api-key": "header-secret"})
    assert "secret-token" not in repr(client)
    assert "header-secret" not in repr(client)


def stream_payload(server: FaultServer, payload: object) -> None:
    """"Good " as one good chunk, then `payload` as the next `data:` line, then [DONE]."""
    server.set_scenario("malformed_sse", chunks=["Good "], payload=json.dumps(payload))


@pytest.mark.parametrize(("error", "expected"), [
    ("upstream exploded", errors.ServerError),
    ({"message": "upstream exploded"}, errors.ServerError),
    ("This model's maximum context length is 4096 tokens", errors.ContextTooLong),
    ({"message": "context length exceeded", "code": 400}, errors.ContextTooLong),
])
def test_an_error_mid_stream_in_any_shape(fault_server: FaultServer, error: object,
                                          expected: type[errors.SwitchboardError]) -> None:
    stream_payload(fault_server, {"choices": [], "error": error})
    caught = fail(client_for(fault_server))
    assert type(caught) is expected
    assert caught.partial == "Good "
    assert ("exploded" in caught.detail) or ("context" in caught.detail)


def test_a_null_error_in_a_chunk_is_no_error(fault_server: FaultServer) -> None:
    stream_payload(fault_server, {"choices": [{"delta": {"content": "answer"},
                                               "finish_reason": "stop"}], "error": None})
    text, finished = asyncio.run(collect(client_for(fault_server)))
    assert text == "Good answer" and finished.finish_reason == "stop"


@pytest.mark.parametrize("payload", [
    [1, 2],
    {"choices": {"delta": {"content": "x"}}},
    {"choices": "x"},
    {"choices": [1]},
    {"choices": [{"delta": "x"}]},
    {"choices": [{"delta": {"content": 5}}]},
    {"choices": [{"delta": {}, "finish_reason": 3}]},
    {"choices": [], "usage": "lots"},
    {"choices": [], "usage": {"total_tokens": [9]}},
])
def test_a_chunk_of_the_wrong_shape_is_malformed(fault_server: FaultServer,
                                                 payload: object) -> None:
    stream_payload(fault_server, payload)
    caught = fail(client_for(fault_server))
    assert type(caught) is errors.MalformedResponse
    assert caught.partial == "Good "


def test_https_to_a_plain_http_port_is_not_a_certificate_problem(
        fault_server: FaultServer) -> None:
    url = fault_server.base_url.replace("http://", "https://")
    with pytest.raises(errors.NodeUnreachable) as caught:
        list_models(OpenAIClient(url))
    assert not isinstance(caught.value, errors.TLSFailed)
    assert "http://" in caught.value.detail and "https://" in caught.value.detail


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_names_the_new_address_and_is_not_followed(fault_server: FaultServer,
                                                              status: int) -> None:
    fault_server.set_scenario("status", status=status, body="",
                              headers={"Location": "https://node.example/v1/chat/completions"})
    caught = fail(client_for(fault_server))
    assert type(caught) is errors.MalformedResponse
    assert "https://node.example/v1/chat/completions" in caught.detail
    assert len(fault_server.requests) == 1


@pytest.fixture
def no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment proxies would be mounted in front of a MockTransport."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def raising(exc: Exception) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc
    return httpx.MockTransport(handler)


@pytest.mark.usefixtures("no_env_proxy")
def test_no_reply_to_the_model_list_is_unreachable_not_a_stall() -> None:
    client = OpenAIClient("http://node:8080", timeouts=Timeouts(connect=4),
                          transport=raising(httpx.ReadTimeout("timed out")))
    with pytest.raises(errors.NodeUnreachable) as caught:
        list_models(client)
    assert not isinstance(caught.value, errors.StreamInterrupted)
    assert "no reply within 8 s" in caught.value.detail


@pytest.mark.usefixtures("no_env_proxy")
def test_a_failing_proxy_is_named() -> None:
    client = OpenAIClient("https://node:8080",
                          transport=raising(httpx.ProxyError("407 Proxy Authentication Required")))
    with pytest.raises(errors.NodeUnreachable) as caught:
        list_models(client)
    assert "proxy" in caught.value.detail and "reset" not in caught.value.detail


@pytest.mark.parametrize(("message", "secret"), [
    ("Received API Key = secret-token", "secret-token"),
    ("invalid key sk-or-v1-0123456789abcdef", "sk-or-v1-0123456789abcdef"),
])
def test_keys_echoed_by_the_server_stay_out_of_the_detail(fault_server: FaultServer,
                                                          message: str, secret: str) -> None:
    fault_server.set_scenario("status", status=401, message=message)
    caught = fail(client_for(fault_server))
    assert isinstance(caught, errors.AuthFailed) and "HTTP 401" in caught.detail
    assert secret not in caught.detail and secret not in str(caught)


def test_a_key_echoed_mid_stream_stays_out_of_the_detail(fault_server: FaultServer) -> None:
    fault_server.set_scenario("error_mid_stream", chunks=["So far"],
                              error_message="upstream rejected key secret-token")
    caught = fail(client_for(fault_server))
    assert "secret-token" not in caught.detail and "[token]" in caught.detail


def test_a_finished_answer_without_done_ends_normally(fault_server: FaultServer) -> None:
    fault_server.set_scenario("stall_mid_stream", chunks=["All ", "there"], finished=True,
                              stall_s=30)
    client = client_for(fault_server, timeouts=Timeouts(first_token=5, stall=0.3))
    text, finished = asyncio.run(collect(client))
    assert text == "All there" and finished.finish_reason == "stop"


def test_an_unreadable_cost_is_unknown_and_logged(fault_server: FaultServer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    fault_server.set_scenario("ok", usage={"prompt_tokens": 1, "completion_tokens": 2,
                                           "total_tokens": 3, "cost": "n/a"})
    with caplog.at_level(logging.WARNING, logger=openai_client.__name__):
        _, finished = asyncio.run(collect(client_for(fault_server)))
    assert finished.usage is not None
    assert finished.usage.total_tokens == 3 and finished.usage.cost_micro_usd is None
    assert any("cost" in r.getMessage() for r in caplog.records)
