"""The cloud planner: OpenRouter, over the shared OpenAI-compatible client.

Adds what OpenRouter has beyond the OpenAI protocol: attribution headers, the cost of
each answer (`usage.cost`, read by the shared client), the key's limit and remaining
credit (`GET /key`, or `GET /auth/key` where the former is missing), model prices
(`GET /models`, cached), OpenRouter's meaning of 401/402/403/503, and a bounded retry
of 429 and 503 that never repeats a request once any of its answer has arrived.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from app.core import budget, errors
from app.core.llm.openai_client import (
    ChatMessages,
    Delta,
    OpenAIClient,
    StreamEvent,
    Timeouts,
    _retry_after,
)
from app.core.money import MICRO_PER_USD, micro_usd
from app.core.privacy import LOCAL_ONLY

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
TIER = "cloud planner"
# OpenRouter ranks apps by this URL and shows the title; it must not be localhost.
# Switchboard has no public site yet, so a reserved name that can never be someone else's.
APP_URL = "https://switchboard.invalid/"
APP_TITLE = "Switchboard"

MAX_RETRIES = 2  # after the first try: at most three requests for one plan
MAX_RETRY_WAIT_S = 10.0  # a longer Retry-After fails at once: planning then runs locally
DEFAULT_RETRY_WAIT_S = 1.0  # doubled per retry when the server names no wait
PRICE_TTL_S = 3600.0


Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What OpenRouter says about the user's key, in integer micro-dollars.

    `limit_micro_usd` and `remaining_micro_usd` are None for a key without a limit.
    Remaining and limit are rounded down and usage up, so neither overstates what is left.
    `usage_monthly_micro_usd` is None where the server does not report it (older
    deployments answering only `/auth/key`).
    """

    label: str
    limit_micro_usd: int | None
    remaining_micro_usd: int | None
    usage_monthly_micro_usd: int | None
    is_free_tier: bool


@dataclass(frozen=True, slots=True)
class Prices:
    """One model's prices in micro-dollars, as exact Decimals.

    Decimal, not integer pico-dollars: OpenRouter publishes decimal strings in USD per
    token, and some (cache reads, small models) have more digits than a pico-dollar
    holds ("0.0000000375" is 37.5 pico-dollars). A Decimal of the string, times 10⁶, is
    exact whatever the string's length; rounding happens once, up, when a whole request
    is priced in integer micro-dollars (`worst_case_micro_usd`).
    """

    model: str
    prompt_micro_usd_per_token: Decimal
    completion_micro_usd_per_token: Decimal
    request_micro_usd: Decimal  # a fixed fee per request; zero for most models
    # Whether the model takes a JSON schema for its answer (OpenRouter's
    # `supported_parameters` lists "structured_outputs").
    structured_outputs: bool = False

    def worst_case_micro_usd(self, prompt_tokens: int, max_tokens: int) -> int:
        """The most a request can cost: every prompt token, `max_tokens` of answer and the
        request fee, rounded up to a whole micro-dollar."""
        # The ledger's own arithmetic (exact, rounded up), in its USD-per-token terms.
        return budget.worst_case_micro_usd(prompt_tokens, max_tokens, {
            "prompt": self.prompt_micro_usd_per_token.scaleb(-6),
            "completion": self.completion_micro_usd_per_token.scaleb(-6),
            "request": self.request_micro_usd.scaleb(-6),
        })


class _OpenRouterHTTP(OpenAIClient):
    """The shared client with OpenRouter's status codes mapped to its meanings."""

    def _status_error(self, status: int, headers: httpx.Headers,
                      content: bytes) -> errors.SwitchboardError:
        message, metadata = _openrouter_error(content)
        detail = f"HTTP {status}" + (f": {self._server_text(message)}" if message else "")
        if status == 401:
            return self._error(errors.CloudKeyRejected, detail)
        if status == 402:
            source = metadata.get("limit_source") if isinstance(metadata, dict) else None
            if source == "openrouter_key_limit":
                detail = "HTTP 402: the key's limit is reached"
            elif source == "openrouter_credits":
                detail = "HTTP 402: the account has no credit left"
            return self._error(errors.CloudCreditExhausted, detail)
        if status == 403:  # OpenRouter: moderation or a guardrail, not a bad key
            return self._error(errors.RequestRejected, detail)
        if status == 503:
            return self._error(errors.CloudProviderUnavailable, detail,
                               retry_after=_retry_after(headers.get("retry-after")))
        return super()._status_error(status, headers, content)

    async def get_json(self, path: str, *, missing_ok: bool = False) -> Any:
        """GET `path` and its JSON, floats as Decimals (money stays exact); None for a 404
        when `missing_ok`."""
        limit = self.timeouts.connect * 2
        try:
            response = await self._client().get(path, timeout=limit)
        except httpx.HTTPError as e:
            raise self._transport_error(e, reply_limit=limit) from None
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code != 200:
            raise self._status_error(response.status_code, response.headers, response.content)
        try:
            return json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise self._error(errors.MalformedResponse, f"{path} did not answer JSON") from None


class OpenRouter:
    """The cloud planner's client: plans, key information and prices.

    One instance per event loop (it holds one `httpx.AsyncClient`); close it with
    `aclose()`. `sleep` and `clock` are injectable so tests neither wait out a
    Retry-After nor an hour of price cache.
    """

    name = "Cloud planner"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeouts: Timeouts | None = None,
        app_url: str = APP_URL,
        app_title: str = APP_TITLE,
        transport: httpx.AsyncBaseTransport | None = None,
        price_ttl_s: float = PRICE_TTL_S,
        max_retries: int = MAX_RETRIES,
        max_retry_wait_s: float = MAX_RETRY_WAIT_S,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.client = _OpenRouterHTTP(
            base_url,
            token=api_key,
            timeouts=timeouts or Timeouts(),
            tier=TIER,
            headers={
                "HTTP-Referer": app_url,
                "X-OpenRouter-Title": app_title,
                "X-Title": app_title,  # the older name, still read by OpenRouter
            },
            transport=transport,
        )
        self.price_ttl_s = price_ttl_s
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s
        self._sleep = sleep
        self._clock = clock
        self._prices: dict[str, Prices] = {}
        self._prices_fetched_at: float | None = None
        self._prices_lock = asyncio.Lock()  # one /models fetch for many waiting callers

    def __repr__(self) -> str:  # never the key
        return f"OpenRouter({self.client.base_url!r})"

    async def aclose(self) -> None:
        await self.client.aclose()

    # ------------------------------------------------------------------ planning

    async def stream_plan(self, messages: ChatMessages, *, model: str, max_tokens: int,
                          schema: Mapping[str, Any] | None = None
                          ) -> AsyncGenerator[StreamEvent, None]:
        """Yield the plan's `Delta`s, then a `Finished` whose `usage.cost_micro_usd` is
        what OpenRouter charged. With `schema`, the answer is asked for as structured
        output in that JSON schema (only for a model that supports it).

        `max_tokens` is always sent: it bounds what the budget reserved. 429 and 503 are
        retried at most `max_retries` times, waiting what Retry-After says; once any
        text has arrived nothing is retried (the answer would be paid for twice).

        Every request passes the privacy check first: one that carries document or
        pasted text marked local-only is refused and nothing is sent.
        """
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
        LOCAL_ONLY.refuse_if_local_only(messages)
        extra: dict[str, Any] = {"usage": {"include": True}}
        if schema is not None:
            extra["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "plan", "strict": True, "schema": dict(schema)}}
        for attempt in range(self.max_retries + 1):
            streamed = False
            try:
                async for event in self.client.stream_chat(
                    messages, model=model, max_tokens=max_tokens,
                    # Usage accounting: OpenRouter now always reports it, and documents
                    # this flag (and stream_options, sent by the shared client) as
                    # deprecated no-ops; older deployments need it for `usage.cost`.
                    extra_body=extra,
                ):
                    if isinstance(event, Delta):
                        streamed = True
                    yield event
                return
            except (errors.RateLimited, errors.CloudProviderUnavailable) as e:
                if streamed or e.partial:
                    raise
                await self._before_retry(e, attempt)

    async def _before_retry(self, e: errors.RateLimited | errors.CloudProviderUnavailable,
                            attempt: int) -> None:
        """Wait before the next try, or re-raise `e` when no try is left or the server asks
        for a longer wait than the user should sit through."""
        if attempt >= self.max_retries:
            raise e
        wait = e.retry_after if e.retry_after is not None else DEFAULT_RETRY_WAIT_S * 2 ** attempt
        if wait > self.max_retry_wait_s:
            raise e
        log.info("the cloud planner answered %s; retrying in %.1f s (%d of %d)",
                 type(e).__name__, wait, attempt + 1, self.max_retries)
        await self._sleep(wait)

    async def _get_json(self, path: str, *, missing_ok: bool = False) -> Any:
        for attempt in range(self.max_retries + 1):
            try:
                return await self.client.get_json(path, missing_ok=missing_ok)
            except (errors.RateLimited, errors.CloudProviderUnavailable) as e:
                await self._before_retry(e, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ the key

    async def key_info(self) -> KeyInfo:
        """The key's label, limit, remaining credit and this month's use."""
        doc = await self._get_json("/key", missing_ok=True)
        if doc is None:  # a deployment that predates /key
            doc = await self._get_json("/auth/key")
        try:
            data = doc["data"]
            return KeyInfo(
                label=str(data.get("label") or ""),
                limit_micro_usd=_micro(data.get("limit"), spend=False),
                remaining_micro_usd=_micro(data.get("limit_remaining"), spend=False),
                usage_monthly_micro_usd=_micro(data.get("usage_monthly"), spend=True),
                is_free_tier=bool(data.get("is_free_tier", False)),
            )
        except (KeyError, TypeError, AttributeError, ArithmeticError, ValueError):
            raise self.client._error(errors.MalformedResponse,
                                     "the key information is not in OpenRouter's format") from None

    # ------------------------------------------------------------------ prices

    async def prices(self, model: str) -> Prices:
        """`model`'s prices, from a list of all models fetched at most once per
        `price_ttl_s`."""
        async with self._prices_lock:
            fetched = self._prices_fetched_at
            if fetched is None or self._clock() - fetched >= self.price_ttl_s:
                self._prices = await self._fetch_prices()
                self._prices_fetched_at = self._clock()
        try:
            found = self._prices[model]
        except KeyError:
            raise self.client._error(errors.ModelNotFound,
                                     f"OpenRouter does not offer {model!r}") from None
        if min(found.prompt_micro_usd_per_token, found.completion_micro_usd_per_token,
               found.request_micro_usd) < 0:
            # OpenRouter lists routers such as openrouter/auto at "-1": priced per request
            # by whichever model answers, so no budget can bound them beforehand.
            raise self.client._error(errors.ModelNotFound,
                                     f"{model!r} has no fixed price, so the budget can't "
                                     "bound it; pick a model with a price")
        return found

    async def _fetch_prices(self) -> dict[str, Prices]:
        doc = await self._get_json("/models")
        found: dict[str, Prices] = {}
        try:
            for entry in doc["data"]:
                pricing = entry.get("pricing")
                if not isinstance(pricing, dict):
                    continue  # a model without prices can't be budgeted; it is skipped
                found[str(entry["id"])] = Prices(
                    model=str(entry["id"]),
                    prompt_micro_usd_per_token=_price(pricing["prompt"]),
                    completion_micro_usd_per_token=_price(pricing["completion"]),
                    request_micro_usd=_price(pricing.get("request", "0")),
                    structured_outputs="structured_outputs" in (
                        entry.get("supported_parameters") or ()),
                )
        except (KeyError, TypeError, AttributeError, ArithmeticError, ValueError):
            raise self.client._error(errors.MalformedResponse,
                                     "the model list has no prices in OpenRouter's "
                                     "format") from None
        return found


def _price(text: object) -> Decimal:
    """A price string (USD) as exact micro-dollars; ValueError for anything else."""
    if not isinstance(text, str | int | Decimal) or isinstance(text, bool):
        raise ValueError(f"a price is a {type(text).__name__}")
    try:
        value = Decimal(text) * MICRO_PER_USD
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a price") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a price")
    return value


def _micro(usd: object, *, spend: bool) -> int | None:
    """A USD amount from OpenRouter (parsed as Decimal) in micro-dollars; None stays None."""
    if usd is None:
        return None
    if isinstance(usd, float):
        raise ValueError("an amount is a float")  # the JSON is read with Decimals
    return micro_usd(usd, spend=spend)  # type: ignore[arg-type]


def _openrouter_error(content: bytes) -> tuple[str, Mapping[str, Any]]:
    """The message and metadata of OpenRouter's `{"error": {code, message, metadata}}`."""
    try:
        doc = json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace").strip(), {}
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return "", {}
    metadata = err.get("metadata")
    return str(err.get("message") or ""), metadata if isinstance(metadata, dict) else {}
