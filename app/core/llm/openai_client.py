"""The one OpenAI-compatible streaming client, over httpx, shared by every tier.

It keeps one `httpx.AsyncClient` per instance, sets every timeout explicitly (a long wait
for the first token, a shorter one between tokens), verifies TLS against the operating
system's trust store plus an optional CA bundle, takes proxies from the environment, and
maps every failure to a typed error from `app.core.errors` that keeps the text already
streamed in `partial`. Cancel a stream by cancelling the task that iterates it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import truststore

from app import __version__
from app.core import errors, logs
from app.core.money import micro_usd
from app.core.text import well_formed

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    # The response's headers: servers send them as soon as they take the request (the
    # prompt is read after), so a node that sends nothing for this long is stuck.
    first_byte: float = 30.0
    first_token: float = 180.0  # a big model on a busy node can take minutes to start
    stall: float = 60.0  # silence between two chunks after the first
    write: float = 30.0


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_micro_usd: int | None = None  # OpenRouter reports `usage.cost` in USD

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Usage:
        cost = raw.get("cost")
        return cls(
            prompt_tokens=int(raw.get("prompt_tokens") or 0),
            completion_tokens=int(raw.get("completion_tokens") or 0),
            total_tokens=int(raw.get("total_tokens") or 0),
            cost_micro_usd=_micro_usd(cost) if cost is not None else None,
        )


@dataclass(slots=True)  # not frozen: one is made a chunk, and frozen ones are slow to make
class _Chunk:
    """One streamed chunk, its shape checked."""

    texts: list[str]
    finish_reason: str | None
    usage: Usage | None
    model: str
    error: object  # the chunk's `error` member; None when it has none


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the answer as it streams in."""

    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The end of a stream: the whole text, why it stopped and what it used."""

    text: str
    finish_reason: str | None
    usage: Usage | None
    model: str = ""
    latency_first_token_s: float | None = None


StreamEvent = Delta | Finished
ChatMessages = Sequence[Mapping[str, str]]


def normalise_base_url(url: str) -> str:
    """`http://node:8080` → `http://node:8080/v1`; an explicit path is kept as given."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    if not path:
        path = "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def root_of(base_url: str) -> str:
    """A base URL without its trailing `/v1`."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    path = path[: -len("/v1")] if path.endswith("/v1") else path
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def tls_context(ca_bundle: str = "") -> ssl.SSLContext:
    """Verify against the OS trust store (as browsers do), plus the office CA if given."""
    ctx = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_bundle:
        try:
            ctx.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as e:
            raise errors.TLSFailed(f"the CA bundle {ca_bundle!r} can't be used: {e}") from None
    return ctx


@dataclass
class OpenAIClient:
    """Speaks the OpenAI chat-completions protocol to one server."""

    base_url: str
    token: str | None = field(default=None, repr=False)
    timeouts: Timeouts = field(default_factory=Timeouts)
    ca_bundle: str = ""
    tier: str = "office node"
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold a key
    transport: httpx.AsyncBaseTransport | None = None  # injectable for tests
    _http: httpx.AsyncClient | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.base_url = normalise_base_url(self.base_url)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            headers = {"User-Agent": f"Switchboard/{__version__}", **self.headers}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            # The OS's certificate store, always: httpx's default would load certifi's whole
            # bundle into memory even for a plain-http node (a proxy may still use TLS).
            https = urlsplit(self.base_url).scheme == "https"
            verify = tls_context(self.ca_bundle if https else "")
            t = self.timeouts
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                headers=headers,
                verify=verify,
                trust_env=True,  # HTTPS_PROXY / NO_PROXY as IT sets them
                # Never re-send a POST and its bearer token to wherever a 3xx points.
                follow_redirects=False,
                transport=self.transport,
                # The read timeout only bounds one socket read; the stream enforces the
                # first-token and stall limits itself, so here it is the longest of them.
                timeout=httpx.Timeout(connect=t.connect, read=max(t.first_token, t.stall),
                                      write=t.write, pool=t.connect),
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _error(self, cls: type[errors.SwitchboardError], detail: str = "", partial: str = "",
               **kw: Any) -> errors.SwitchboardError:
        return cls(detail, partial=partial, tier=self.tier, **kw)

    @property
    def root_url(self) -> str:
        """`http://node:8080/v1` → `http://node:8080`: where llama.cpp's `/props`,
        `/slots` and `/metrics`, Ollama's `/api/…` and LiteLLM's `/model/info` live."""
        return root_of(self.base_url)

    async def request(self, method: str, path: str, *, at_root: bool = False,
                      timeout: float | None = None, **kw: Any) -> httpx.Response:
        """One request that is not a chat (a model list, a node's properties or load),
        with the client's token and TLS; `timeout` bounds the wait for the whole reply.

        Raises the typed error of a transport failure; any HTTP status is returned.
        """
        limit = timeout if timeout is not None else self.timeouts.connect * 2
        url = self.root_url + path if at_root else path
        try:
            return await self._client().request(method, url, timeout=limit, **kw)
        except httpx.HTTPError as e:
            raise self._transport_error(e, reply_limit=limit) from None

    async def model_list(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """The server's `/models` entries as it sent them (vLLM adds `max_model_len`,
        llama.cpp a `meta` with the context of one request)."""
        response = await self.request("GET", "/models", timeout=timeout)
        if response.status_code != 200:
            raise self._status_error(response.status_code, response.headers, response.content)
        try:
            data = response.json()["data"]
            if not all(isinstance(m, dict) and "id" in m for m in data):
                raise TypeError
            return list(data)
        except (ValueError, KeyError, TypeError):
            raise self._error(errors.MalformedResponse, "the model list is not in the OpenAI "
                              "format") from None

    async def list_models(self) -> list[str]:
        """The ids of the models the server offers."""
        return [str(m["id"]) for m in await self.model_list()]

    async def stream_chat(
        self,
        messages: ChatMessages,
        *,
        model: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Yield `Delta`s as the answer arrives, then one `Finished`.

        Raises a `SwitchboardError` whose `partial` holds the text received before the
        fault. Cancelling the consuming task closes the connection at once.
        """
        body: dict[str, Any] = {
            "model": model,
            # Pasted or extracted text may hold half a character too; JSON can't send it.
            "messages": [{k: well_formed(v) for k, v in m.items()} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        body.update(extra_body or {})

        received: list[str] = []
        started = time.monotonic()
        first_token_at: float | None = None
        finish_reason: str | None = None
        usage: Usage | None = None
        served_model = ""
        done = False
        try:
            async with self._responding(body) as response:
                if response.status_code != 200:
                    content = await response.aread()
                    raise self._status_error(response.status_code, response.headers, content)
                with _Watchdog(self.timeouts.first_token) as watchdog:
                    async for line in response.aiter_lines():
                        watchdog.heard()
                        if not line.startswith("data:"):
                            continue  # blank separators, `: keep-alive` comments, event: lines
                        data = line[5:].strip()
                        if data == "[DONE]":
                            done = True
                            break
                        try:
                            chunk = _read_chunk(data)
                        except ValueError as e:
                            raise self._error(errors.MalformedResponse, str(e),
                                              "".join(received)) from None
                        served_model = chunk.model or served_model
                        usage = chunk.usage or usage
                        finish_reason = chunk.finish_reason or finish_reason
                        if chunk.texts:
                            if first_token_at is None:
                                first_token_at = time.monotonic()
                            watchdog.hold()
                            for text in chunk.texts:
                                received.append(text)
                                yield Delta(text)
                            watchdog.listen(self.timeouts.stall)
                        if chunk.error is not None or finish_reason == "error":
                            raise self._mid_stream_error(chunk.error, "".join(received))
        except httpx.HTTPError as e:
            raise self._transport_error(e, "".join(received)) from None
        except TimeoutError:
            if finish_reason is None:
                what = "no further words" if received else "no answer"
                raise self._error(errors.StreamStalled, f"{what} for {watchdog.limit:g} s",
                                  "".join(received)) from None
            # complete, but the server kept the line open without [DONE]
        if not done and finish_reason is None:
            raise self._error(errors.StreamInterrupted, "the stream ended early",
                              "".join(received))
        yield Finished(
            text="".join(received),
            finish_reason=finish_reason,
            usage=usage,
            model=served_model or model,
            latency_first_token_s=(first_token_at - started) if first_token_at else None,
        )

    @contextlib.asynccontextmanager
    async def _responding(self, body: Mapping[str, Any]) -> AsyncIterator[httpx.Response]:
        """The streamed response to a chat request, its headers awaited for at most
        `first_byte` seconds (closed when the block ends)."""
        client = self._client()
        request = client.build_request("POST", "/chat/completions", json=body)
        limit = min(self.timeouts.first_byte, self.timeouts.first_token)
        try:
            response = await asyncio.wait_for(client.send(request, stream=True), limit)
        except TimeoutError:
            raise self._error(errors.NodeUnreachable, f"it took the request but sent nothing "
                              f"for {limit:g} s") from None
        try:
            yield response
        finally:
            await response.aclose()

    def _server_text(self, text: str) -> str:
        """Server text made safe and short for a detail (kept in chat history, shown in the
        UI): gateways sometimes echo the key they were sent."""
        if self.token:
            text = text.replace(self.token, "[token]")
        return logs.redact(text)[:300]

    def _mid_stream_error(self, err: object, partial: str) -> errors.SwitchboardError:
        message, code = _message_and_code(err)
        message = self._server_text(message) or "the server reported an error mid-answer"
        if code == "context_length_exceeded" or _mentions_context(message):
            return self._error(errors.ContextTooLong, message, partial)
        return self._error(errors.ServerError, message, partial)

    def _transport_error(self, e: httpx.HTTPError, partial: str = "", *,
                         reply_limit: float | None = None) -> errors.SwitchboardError:
        """Map an httpx failure; `reply_limit` is the wait for a reply outside a stream."""
        if isinstance(e, httpx.ConnectError) and (tls := _ssl_cause(e)) is not None:
            if isinstance(tls, ssl.SSLCertVerificationError):
                return self._error(errors.TLSFailed, str(tls), partial)
            return self._error(errors.NodeUnreachable, f"the TLS handshake failed ({tls}); check "
                               "whether the address should start with http:// or https://",
                               partial)
        if isinstance(e, httpx.ProxyError):
            return self._error(errors.NodeUnreachable, f"the proxy failed: {e}", partial)
        if isinstance(e, httpx.ConnectError | httpx.ConnectTimeout | httpx.UnsupportedProtocol):
            return self._error(errors.NodeUnreachable, str(e) or type(e).__name__, partial)
        if isinstance(e, httpx.ReadTimeout):
            if reply_limit is not None:
                return self._error(errors.NodeUnreachable, f"no reply within {reply_limit:g} s")
            return self._error(errors.StreamStalled, "the connection went silent", partial)
        if isinstance(e, httpx.TransportError):
            detail = "the connection was closed" if isinstance(e, httpx.RemoteProtocolError) \
                else "the connection was reset"
            return self._error(errors.StreamInterrupted if partial else errors.NodeUnreachable,
                               detail, partial)
        return self._error(errors.SwitchboardError, type(e).__name__, partial)

    def _status_error(self, status: int, headers: httpx.Headers,
                      content: bytes) -> errors.SwitchboardError:
        message, code = _error_body(content)
        detail = f"HTTP {status}" + (f": {self._server_text(message)}" if message else "")
        if 300 <= status < 400:
            location = self._server_text(headers.get("location", "another address"))
            return self._error(errors.MalformedResponse, f"HTTP {status}: the address redirects "
                               f"to {location}; use that address")
        if status in (401, 403):
            return self._error(errors.AuthFailed, detail)
        if code == "no_db_connection":
            # A LiteLLM gateway with only its master key (no key database) answers any
            # other token this way.
            return self._error(errors.AuthFailed, f"HTTP {status}: the gateway knows only its "
                               "master key, and this token is not it")
        if status == 404:
            if code == "model_not_found" or "model" in message.lower():
                return self._error(errors.ModelNotFound, detail)
            return self._error(errors.MalformedResponse,
                               f"{detail} — is {self.base_url} an OpenAI-compatible address?")
        if code == "context_length_exceeded" or _mentions_context(message):
            return self._error(errors.ContextTooLong, detail)
        if status == 429:
            return self._error(errors.RateLimited, detail,
                               retry_after=_retry_after(headers.get("retry-after")))
        if status >= 500:
            return self._error(errors.ServerError, detail)
        return self._error(errors.RequestRejected, detail)


class _Watchdog:
    """Raises TimeoutError out of its block, as `asyncio.timeout` does, once the server has
    sent nothing for `limit` seconds while the stream waits on it.

    One timer serves the whole stream: `heard` only notes the time, and a timer that comes
    due before the deadline sleeps on until it, since arming a timer for every line would
    cost more than reading the line. The block's task must be the one reading the stream.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._listening, self._expired = True, False

    def __enter__(self) -> _Watchdog:
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._task, self._cancelling = task, task.cancelling()
        self.heard()
        self._timer = self._loop.call_at(self._deadline, self._due)
        return self

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None,
                 tb: object) -> None:
        self._timer.cancel()
        if self._expired and self._task.uncancel() <= self._cancelling \
                and kind is asyncio.CancelledError:
            raise TimeoutError from e

    def heard(self) -> None:
        self._deadline = self._loop.time() + self.limit

    def hold(self) -> None:
        """The consumer has the stream: the time it takes is not the server's silence, and
        a cancel now would land in whatever the consumer awaits."""
        self._listening = False

    def listen(self, limit: float) -> None:
        """Wait on the server again, for at most `limit` seconds of silence."""
        if limit < self.limit:  # the timer may be set past the new, nearer deadline
            self._timer.cancel()
            self._timer = self._loop.call_at(self._loop.time() + limit, self._due)
        self.limit = limit
        self._listening = True
        self.heard()

    def _due(self) -> None:
        now = self._loop.time()
        if not self._listening:  # `listen` sets a deadline no nearer than this
            self._timer = self._loop.call_at(now + self.limit, self._due)
        elif now < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._due)
        else:
            self._expired = True
            self._task.cancel()


def _ssl_cause(e: BaseException) -> ssl.SSLError | None:
    """The TLS failure behind a connection error, however deeply httpcore wrapped it."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _micro_usd(usd: object) -> int | None:
    """USD → integer micro-dollars, rounded up so spend is never under-counted; None if the
    server's figure can't be read (logged, since that spend then goes uncounted).

    """
    try:
        return micro_usd(usd, spend=True)  # type: ignore[arg-type]
    except ValueError:  # "n/a", NaN, Infinity
        log.warning("the server reported a cost Switchboard can't read: %.40r", usd)
        return None


def _read_chunk(data: str) -> _Chunk:
    """One SSE `data:` payload; ValueError saying what is wrong with any other shape."""
    try:
        chunk = json.loads(data)
    except ValueError:
        raise ValueError("a streamed chunk is not JSON") from None
    if not isinstance(chunk, dict):
        raise ValueError("a streamed chunk is not an object")
    texts: list[str] = []
    finish_reason: str | None = None
    for choice in _checked(chunk.get("choices"), list, "its choices") or ():
        choice = _checked(choice, dict, "a choice") or {}
        delta = _checked(choice.get("delta"), dict, "a delta") or {}
        if text := _checked(delta.get("content"), str, "the content"):
            texts.append(well_formed(text))  # to be stored, and sent on in a later request
        finish_reason = _checked(choice.get("finish_reason"), str, "finish_reason") or finish_reason
    raw_usage = _checked(chunk.get("usage"), dict, "its usage")
    try:
        usage = Usage.parse(raw_usage) if raw_usage else None
    except (TypeError, ValueError):
        raise ValueError("a streamed chunk's token counts are not numbers") from None
    return _Chunk(texts, finish_reason, usage, str(chunk.get("model") or ""), chunk.get("error"))


def _checked[T](value: object, kind: type[T], what: str) -> T | None:
    """`value` if it is a `kind` or null; otherwise the chunk is malformed."""
    if value is None or isinstance(value, kind):
        return value
    raise ValueError(f"{what} in a streamed chunk is a {type(value).__name__}, not a "
                     f"{kind.__name__}")


def _message_and_code(err: object) -> tuple[str, str]:
    """The message and code of an OpenAI-style `error`: an object, a bare string, or null."""
    if isinstance(err, str):
        return err, ""
    if isinstance(err, dict):
        code = str(err.get("code") or "")
        if code.isdigit():  # LiteLLM's code is the HTTP status again; its type says more
            code = str(err.get("type") or "")
        return str(err.get("message") or err.get("detail") or ""), code
    return "", ""


def _error_body(content: bytes) -> tuple[str, str]:
    """The message and code of an OpenAI-style error body, or its text."""
    try:
        doc = json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace").strip(), ""
    return _message_and_code(doc.get("error", doc) if isinstance(doc, dict) else None)


def _mentions_context(message: str) -> bool:
    m = message.lower()
    return "context" in m and any(w in m for w in ("exceed", "too long", "maximum", "length"))


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds or as an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
