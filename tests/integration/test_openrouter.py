"""The cloud planner's client against a stand-in OpenRouter on loopback: attribution,
cost in micro-dollars, key information, cached prices, typed errors and bounded retries."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from app.core import errors
from app.core.llm.openai_client import Delta, Finished
from app.core.llm.openrouter import KeyInfo, OpenRouter, Prices
from tests.fixtures.openrouter_server import API_KEY, DEFAULT_REPLY, KeyState, OpenRouterServer

BRIEF = [{"role": "system", "content": "You plan office work."},
         {"role": "user", "content": "Plan a summary of doc-1 and doc-2"}]  # 4 + 7 words
PLANNER = "stand-in/planner"  # $3 per million prompt tokens, $15 per million completion


@pytest.fixture
def server() -> Iterator[OpenRouterServer]:
    with OpenRouterServer(key=KeyState(limit="5", usage="1.25", usage_monthly="0.5")) as s:
        yield s


class Sleeps:
    """An injected sleep that records the waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def planner(server: OpenRouterServer, **kw: Any) -> OpenRouter:
    return OpenRouter(kw.pop("api_key", API_KEY), base_url=server.base_url, **kw)


async def plan(client: OpenRouter, *, max_tokens: int = 64,
               model: str = PLANNER) -> tuple[list[str], Finished]:
    deltas: list[str] = []
    finished = None
    try:
        async for event in client.stream_plan(BRIEF, model=model, max_tokens=max_tokens):
            if isinstance(event, Delta):
                deltas.append(event.text)
            else:
                finished = event
    finally:
        await client.aclose()
    assert finished is not None
    return deltas, finished


def plan_fails(client: OpenRouter) -> errors.SwitchboardError:
    with pytest.raises(errors.SwitchboardError) as caught:
        asyncio.run(plan(client))
    return caught.value


# ---------------------------------------------------------------------- planning


def test_sends_attribution_bearer_max_tokens_and_asks_for_usage(
        server: OpenRouterServer) -> None:
    asyncio.run(plan(planner(server), max_tokens=64))
    [request] = server.chat_requests()
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["http-referer"].startswith("https://")
    assert request.headers["x-openrouter-title"] == "Switchboard"
    assert request.headers["x-title"] == "Switchboard"
    body = request.json()
    assert body["model"] == PLANNER and body["stream"] is True
    assert body["max_tokens"] == 64
    assert body["usage"] == {"include": True}
    assert body["stream_options"] == {"include_usage": True}


def test_max_tokens_is_required_and_bounds_the_answer(server: OpenRouterServer) -> None:
    with pytest.raises(ValueError):
        asyncio.run(plan(planner(server), max_tokens=0))
    deltas, finished = asyncio.run(plan(planner(server), max_tokens=3))
    assert deltas == DEFAULT_REPLY[:3]
    assert finished.finish_reason == "length"
    assert server.chat_requests()[-1].json()["max_tokens"] == 3


def test_comments_are_ignored_and_cost_is_read_in_micro_dollars(
        server: OpenRouterServer) -> None:
    deltas, finished = asyncio.run(plan(planner(server)))
    assert deltas == DEFAULT_REPLY  # ": OPENROUTER PROCESSING" never became text
    assert finished.text == "".join(DEFAULT_REPLY) and finished.finish_reason == "stop"
    usage = finished.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (11, 10)
    # 11 × $0.000003 + 10 × $0.000015 = $0.000183
    assert usage.cost_micro_usd == 183


def test_a_sub_micro_dollar_cost_is_rounded_up(server: OpenRouterServer) -> None:
    # 11 × $0.0000000375 + 10 × $0.00000015 + $0.0001 = $0.0001019125 → 102 µ$
    _, finished = asyncio.run(plan(planner(server), model="stand-in/cheap"))
    assert finished.usage is not None and finished.usage.cost_micro_usd == 102


def test_the_key_is_charged_what_the_answer_cost(server: OpenRouterServer) -> None:
    asyncio.run(plan(planner(server)))
    assert server.remaining() == Decimal("3.75") - Decimal("0.000183")
    info = asyncio.run(key_info(planner(server)))
    assert info.remaining_micro_usd == 3_749_817
    assert info.usage_monthly_micro_usd == 500_183


def test_an_error_mid_stream_is_typed_and_keeps_the_partial_plan(
        server: OpenRouterServer) -> None:
    server.inject("error_mid_stream", after=2, message="Upstream provider timed out")
    e = plan_fails(planner(server))
    assert type(e) is errors.ServerError
    assert e.partial == "".join(DEFAULT_REPLY[:2])
    assert e.tier == "cloud planner" and "Upstream provider timed out" in e.detail
    assert len(server.chat_requests()) == 1  # text had arrived: never retried


def test_a_stream_dropped_before_its_cost_is_interrupted_not_retried(
        server: OpenRouterServer) -> None:
    server.inject("drop_mid_stream")  # all the text, then the connection is cut
    e = plan_fails(planner(server))
    assert isinstance(e, errors.StreamInterrupted)
    assert e.partial == "".join(DEFAULT_REPLY)
    assert len(server.chat_requests()) == 1
    assert server.remaining() < Decimal("3.75")  # the key was charged all the same


# ---------------------------------------------------------------------- errors


def test_401_is_the_key_rejected(server: OpenRouterServer) -> None:
    e = plan_fails(planner(server, api_key="sk-or-v1-wrong"))
    assert isinstance(e, errors.AuthFailed) and isinstance(e, errors.CloudKeyRejected)
    assert e.title == "The cloud planner rejected your OpenRouter key."
    assert "sk-or-v1-wrong" not in e.user_text()
    with pytest.raises(errors.CloudKeyRejected):
        asyncio.run(key_info(planner(server, api_key="sk-or-v1-wrong")))


def test_402_is_cloud_credit_exhausted(server: OpenRouterServer) -> None:
    server.inject("402", metadata={"limit_source": "openrouter_credits"})
    e = plan_fails(planner(server))
    assert isinstance(e, errors.CloudCreditExhausted)
    assert e.title == "Cloud credit or the key's limit is used up."
    assert e.hint.startswith("Planning runs locally until")
    assert "no credit left" in e.detail
    assert len(server.chat_requests()) == 1  # not a wait-and-retry case


def test_a_key_with_nothing_left_answers_402() -> None:
    with OpenRouterServer(key=KeyState(limit="0.0001", usage="0")) as server:
        asyncio.run(plan(planner(server)))  # $0.000183 > $0.0001: the key goes negative
        e = plan_fails(planner(server))
    assert isinstance(e, errors.CloudCreditExhausted) and "key's limit" in e.detail


def test_429_is_retried_honouring_retry_after(server: OpenRouterServer) -> None:
    server.inject("429", times=2, retry_after=1)
    sleeps = Sleeps()
    deltas, _ = asyncio.run(plan(planner(server, sleep=sleeps)))
    assert deltas == DEFAULT_REPLY
    assert len(server.chat_requests()) == 3
    assert sleeps.waits == [1.0, 1.0]


def test_429_with_retry_after_zero_really_retries(server: OpenRouterServer) -> None:
    server.inject("429", times=1, retry_after=0)
    deltas, _ = asyncio.run(plan(planner(server)))  # the real asyncio.sleep(0)
    assert deltas == DEFAULT_REPLY and len(server.chat_requests()) == 2


def test_429_beyond_the_retry_budget_is_rate_limited(server: OpenRouterServer) -> None:
    server.inject("429", times=3, retry_after=2)
    sleeps = Sleeps()
    e = plan_fails(planner(server, sleep=sleeps))
    assert isinstance(e, errors.RateLimited) and e.retry_after == 2
    assert e.tier == "cloud planner"
    assert len(server.chat_requests()) == 3 and sleeps.waits == [2.0, 2.0]


def test_a_retry_after_longer_than_the_cap_fails_at_once(server: OpenRouterServer) -> None:
    server.inject("429", retry_after=60)
    sleeps = Sleeps()
    e = plan_fails(planner(server, sleep=sleeps))
    assert isinstance(e, errors.RateLimited) and e.retry_after == 60
    assert "60 seconds" in e.hint
    assert len(server.chat_requests()) == 1 and sleeps.waits == []


def test_503_is_retried_then_becomes_a_server_error(server: OpenRouterServer) -> None:
    server.inject("503", times=1, retry_after=1)
    sleeps = Sleeps()
    asyncio.run(plan(planner(server, sleep=sleeps)))
    assert len(server.chat_requests()) == 2 and sleeps.waits == [1.0]

    server.inject("503", times=3)  # no Retry-After: 1 s, then 2 s
    sleeps = Sleeps()
    e = plan_fails(planner(server, sleep=sleeps))
    assert isinstance(e, errors.ServerError) and isinstance(e, errors.CloudProviderUnavailable)
    assert sleeps.waits == [1.0, 2.0] and len(server.chat_requests()) == 5


# ---------------------------------------------------------------------- the key


async def key_info(client: OpenRouter) -> KeyInfo:
    try:
        return await client.key_info()
    finally:
        await client.aclose()


def test_key_info_comes_from_key_in_micro_dollars(server: OpenRouterServer) -> None:
    info = asyncio.run(key_info(planner(server)))
    assert info == KeyInfo(label="sk-or-v1-sta...def", limit_micro_usd=5_000_000,
                           remaining_micro_usd=3_750_000, usage_monthly_micro_usd=500_000,
                           is_free_tier=False)
    assert [r.path for r in server.requests] == ["/api/v1/key"]
    assert server.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_key_info_falls_back_to_auth_key() -> None:
    with OpenRouterServer(key=KeyState(limit=None, is_free_tier=True),
                          serve_key=False) as server:
        info = asyncio.run(key_info(planner(server)))
    assert [r.path for r in server.requests] == ["/api/v1/key", "/api/v1/auth/key"]
    assert info.limit_micro_usd is None and info.remaining_micro_usd is None
    assert info.is_free_tier is True


def test_remaining_credit_is_rounded_down(server: OpenRouterServer) -> None:
    server.key.limit_remaining = Decimal("0.0000019")
    info = asyncio.run(key_info(planner(server)))
    assert info.remaining_micro_usd == 1


# ---------------------------------------------------------------------- prices


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_prices_are_exact_and_cached_until_they_expire(server: OpenRouterServer) -> None:
    clock = Clock()

    async def scenario() -> list[Prices]:
        client = planner(server, clock=clock)
        try:
            first = await client.prices(PLANNER)
            cheap = await client.prices("stand-in/cheap")  # from the same fetch
            clock.now += 3599
            cached = await client.prices(PLANNER)
            assert len(server.requests) == 1
            server.prices[PLANNER] = ("0.000004", "0.000016")
            clock.now += 1  # an hour after the fetch: stale
            fresh = await client.prices(PLANNER)
            assert len(server.requests) == 2
            return [first, cheap, cached, fresh]
        finally:
            await client.aclose()

    first, cheap, cached, fresh = asyncio.run(scenario())
    assert first == cached == Prices(PLANNER, Decimal(3), Decimal(15), Decimal(0),
                                     structured_outputs=True)
    assert cheap.prompt_micro_usd_per_token == Decimal("0.0375")
    assert cheap.request_micro_usd == Decimal(100)
    assert fresh.prompt_micro_usd_per_token == Decimal(4)
    assert all(r.path == "/api/v1/models" for r in server.requests)
    # The budget's worst case: 11 prompt tokens, 64 of answer, rounded up.
    assert first.worst_case_micro_usd(11, 64) == 33 + 960
    assert cheap.worst_case_micro_usd(11, 64) == 111  # 0.4125 + 9.6 + 100 = 110.0125


def test_concurrent_callers_share_one_price_fetch(server: OpenRouterServer) -> None:
    async def scenario() -> None:
        client = planner(server)
        try:
            await asyncio.gather(*(client.prices(PLANNER) for _ in range(5)))
        finally:
            await client.aclose()

    asyncio.run(scenario())
    assert len(server.requests) == 1


def test_unknown_and_unpriced_models_are_typed(server: OpenRouterServer) -> None:
    async def price(model: str) -> Prices:
        client = planner(server)
        try:
            return await client.prices(model)
        finally:
            await client.aclose()

    with pytest.raises(errors.ModelNotFound, match="does not offer"):
        asyncio.run(price("nobody/nothing"))
    with pytest.raises(errors.ModelNotFound, match="no fixed price"):
        asyncio.run(price("openrouter/auto"))


# ---------------------------------------------------------------------- the stand-in


def test_the_stand_in_serves_concurrent_planners_with_latency() -> None:
    async def many(server: OpenRouterServer) -> list[Finished]:
        client = planner(server)
        try:
            async def one() -> Finished:
                async for event in client.stream_plan(BRIEF, model=PLANNER, max_tokens=8):
                    if isinstance(event, Finished):
                        return event
                raise AssertionError("no Finished")
            return await asyncio.gather(*(one() for _ in range(20)))
        finally:
            await client.aclose()

    with OpenRouterServer(latency_s=0.3, key=KeyState(limit="1")) as server:
        results = asyncio.run(many(server))
    assert len(results) == 20 and len(server.chat_requests()) == 20
    assert server.most_at_once > 1  # concurrent, not one after another
    # Each: 11 × $0.000003 + 8 × $0.000015 = $0.000153, taken from the key.
    assert all(r.usage is not None and r.usage.cost_micro_usd == 153 for r in results)
    assert server.remaining() == Decimal(1) - 20 * Decimal("0.000153")


def test_the_stand_in_stops_promptly_while_a_request_waits() -> None:
    server = OpenRouterServer(latency_s=30).start()
    host, port = server.base_url.split("//")[1].split("/")[0].split(":")
    body = json.dumps({"model": PLANNER, "messages": BRIEF, "stream": True,
                       "max_tokens": 8}).encode()
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        deadline = time.monotonic() + 5
        while not server.chat_requests() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.chat_requests()  # the handler is now waiting out its latency
        server.stop()
        # Dropped without an answer: had stop() waited out the latency, the answer would
        # come (or, with stop() giving up first, the read would time out).
        assert conn.recv(1024) == b""
