"""Planning in the cloud within the budget: each call reserves its worst case in the
ledger before it is made, and is settled with what OpenRouter reports it cost.

The cap is the smallest of the user's monthly budget, the machine policy's ceiling and
what the key has left. A call the budget can't cover is refused before anything is sent;
a call cut before its cost arrives stays charged at the reserved amount and is flagged
for reconciliation, so a crash or a dropped stream never frees budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.core import budget, errors, secrets
from app.core.budget import Ledger
from app.core.cloud_account import openrouter_url
from app.core.llm.openai_client import ChatMessages, Delta, Finished, StreamEvent
from app.core.llm.openrouter import OpenRouter
from app.core.money import micro_usd
from app.core.policy import Policy
from app.core.privacy import LOCAL_ONLY
from app.core.routing.cloud_access import cloud_access
from app.core.routing.record import CallTrace, Outcome, current_work, record_call
from app.core.routing.tiers import Tier
from app.core.settings import Settings

log = logging.getLogger(__name__)

TOKENS_PER_MESSAGE = 8  # the chat template's own tokens around each message


def estimate_prompt_tokens(messages: ChatMessages) -> int:
    """An over-estimate of the prompt's tokens, without the cloud model's tokenizer.

    Planner models' tokenizers give about 4 characters a token in English; 3 errs high,
    which is the safe side for a reservation.
    """
    return sum(math.ceil(len(m.get("content", "")) / 3) + TOKENS_PER_MESSAGE
               for m in messages)


def user_cap(settings: Settings, policy: Policy) -> int:
    """The month's cap known without the network: the user's budget, bounded by IT's
    ceiling. The key's remaining credit lowers it further when a call is made."""
    ceiling = policy.budget_ceiling_usd
    return budget.cap(micro_usd(str(settings.monthly_budget_usd), spend=False),
                      None if ceiling is None else micro_usd(str(ceiling), spend=False))


@dataclass
class CloudPlanner:
    settings: Settings
    policy: Policy
    ledger: Ledger
    client_factory: Callable[[str], OpenRouter] | None = None

    def _client(self, key: str) -> OpenRouter:
        if self.client_factory is not None:
            return self.client_factory(key)
        return OpenRouter(key, base_url=openrouter_url())

    def user_cap_micro_usd(self) -> int:
        return user_cap(self.settings, self.policy)

    def _check_allowed(self, *, key_saved: bool | None = None) -> None:
        access = cloud_access(self.settings, self.policy, key_saved=key_saved)
        if not access.ready:
            raise errors.CloudPlanningOff(access.reason, tier="cloud planner")

    async def plan(self, messages: ChatMessages, *, schema: Mapping[str, Any] | None = None,
                   on_reserved: Callable[[int], None] = lambda most: None
                   ) -> AsyncGenerator[StreamEvent, None]:
        """Stream a plan from the cloud, paid for within the budget. `schema` asks for
        structured output where the model supports it; `on_reserved` is told the most
        the call may cost once that is reserved, before anything is sent."""
        LOCAL_ONLY.refuse_if_local_only(messages)  # before anything is fetched or reserved
        self._check_allowed()
        key = await asyncio.to_thread(secrets.get_secret, secrets.OPENROUTER_KEY)
        self._check_allowed(key_saved=bool(key))
        assert key is not None
        model, max_tokens = self.settings.planner_model, self.settings.planner_max_tokens
        client = self._client(key)
        try:
            prices = await client.prices(model)
            await _remember_prices(model, prices.prompt_micro_usd_per_token.scaleb(-6),
                                   prices.completion_micro_usd_per_token.scaleb(-6))
            info = await client.key_info()
            cap = budget.cap(self.user_cap_micro_usd(), None, info.remaining_micro_usd)
            estimate = prices.worst_case_micro_usd(estimate_prompt_tokens(messages), max_tokens)
            reservation = await asyncio.to_thread(self.ledger.reserve, estimate, cap,
                                                  purpose="plan", model=model)
            on_reserved(estimate)
            trace = CallTrace(estimate_prompt_tokens(messages))
            schema = schema if prices.structured_outputs else None
            try:
                async for event in self._charged(client, reservation.id, messages, model,
                                                 max_tokens, schema):
                    trace.seen(event)
                    yield event
            except BaseException as e:
                with contextlib.suppress(Exception):
                    await asyncio.shield(_record_plan(trace, model, estimate, e))
                raise
            await _record_plan(trace, model, estimate, None)
        finally:
            await client.aclose()

    async def _charged(self, client: OpenRouter, reservation_id: int, messages: ChatMessages,
                       model: str, max_tokens: int, schema: Mapping[str, Any] | None = None
                       ) -> AsyncIterator[StreamEvent]:
        sent_anything = settled = False
        try:
            async with contextlib.aclosing(client.stream_plan(
                    messages, model=model, max_tokens=max_tokens, schema=schema)) as plan:
                async for event in plan:
                    if isinstance(event, Delta):
                        sent_anything = True
                    elif isinstance(event, Finished):
                        cost = event.usage.cost_micro_usd if event.usage else None
                        if cost is None:
                            await self._flag(reservation_id, "the cost was not reported")
                        else:
                            await asyncio.to_thread(self.ledger.settle, reservation_id, cost)
                        settled = True
                    yield event
        except errors.SwitchboardError as e:
            if settled:
                raise
            if sent_anything or isinstance(e, errors.StreamInterrupted):
                await self._flag(reservation_id, f"{type(e).__name__}: {e.detail}")
            else:
                # Refused before any work (401, 402, 429…): OpenRouter charges nothing.
                await asyncio.to_thread(self.ledger.settle, reservation_id, 0)
            raise
        except BaseException:  # cancelled, or anything else: keep it charged
            if not settled:
                await asyncio.shield(self._flag(reservation_id,
                                                "stopped before the cost arrived"))
            raise

    async def _flag(self, reservation_id: int, why: str) -> None:
        log.warning("cloud call %d kept charged for reconciliation: %s", reservation_id, why)
        await asyncio.to_thread(self.ledger.flag_unsettled, reservation_id, why)


async def _remember_prices(model: str, prompt: Decimal, completion: Decimal) -> None:
    """OpenRouter's price of the planner model, kept for the cloud-only baseline."""
    work = current_work()
    if work is not None and work.record is not None:
        try:
            await asyncio.to_thread(work.record.remember_prices, model, prompt, completion)
        except errors.StorageFailed as e:
            log.warning("the planner's price could not be kept: %s", e.detail)


async def _record_plan(trace: CallTrace, model: str, reserved_micro_usd: int,
                       error: BaseException | None) -> None:
    """The planning call as a row of the record: its cost as OpenRouter reported it, or,
    as the ledger keeps it, the reserved amount when none arrived (none if refused)."""
    usage = trace.finished.usage if trace.finished else None
    if usage is not None and usage.cost_micro_usd is not None:
        cost = usage.cost_micro_usd
    else:
        cost = reserved_micro_usd if trace.text or trace.finished else 0
    if error is None:
        outcome = Outcome.OK
    elif isinstance(error, asyncio.CancelledError | GeneratorExit):
        outcome = Outcome.CANCELLED
    else:
        outcome = Outcome.CUT_OFF if trace.text else Outcome.FAILED
    await record_call(trace.facts(tier=Tier.CLOUD, node="OpenRouter", model=model,
                                  cost_micro_usd=cost, outcome=outcome,
                                  error=type(error).__name__ if error is not None else ""))
