"""The pool that executes every request: the office's nodes, and the user's own GPUs
(the only place when the user runs chats there; the last resort when the user allows
it as a fallback).

Each request goes to the least-loaded answering node whose context fits it, with an
answer length that fits what is left of that context. A node that fails before its
first word is marked not answering and the request moves to the next; after words have
arrived the partial answer is kept and the error goes up (the chat then offers to
continue on another node). What each node serves, how much it takes at once and how busy
it is come from its engine (`llm.node_info`), checked in the background and, for the
load, again just before a request.

Every request is one row in the record of calls (`routing.record`): the place that
answered (or failed last), the fallbacks taken on the way, tokens, cost and timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any
from urllib.parse import urlsplit

from app.core import errors
from app.core.llm.backend import Health, NodeHealth
from app.core.llm.local_gpus import LocalGPUs
from app.core.llm.node_info import NodeInfo, NodeLoad, discover, is_down, read_load
from app.core.llm.office_node import OfficeNode
from app.core.llm.openai_client import ChatMessages, Finished, OpenAIClient, StreamEvent
from app.core.policy import Policy
from app.core.routing.record import CallTrace, Outcome, record_call
from app.core.routing.tiers import Tier
from app.core.settings import RunOn, Settings

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 4096  # for a node that doesn't say: what any current engine gives at least
# An older load reading is read again before a request: how busy a node is changes by
# the second, and a reading is also how a node that has got stuck is noticed.
LOAD_MAX_AGE_S = 0.25
RECHECK_S = 15.0  # a node marked not answering is asked again after this long
MIN_ANSWER_TOKENS = 64  # an answer shorter than this is not worth starting
TOKENS_PER_MESSAGE = 8  # a chat template's own tokens around each message
CHARS_PER_TOKEN = 4


def estimate_tokens(messages: ChatMessages) -> int:
    """The prompt's tokens as estimated where no tokenizer is asked: about 4 characters
    a token in English, plus the template's tokens around each message."""
    return sum(math.ceil(len(m.get("content", "")) / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE
               for m in messages)


def node_name(url: str, policy: Policy) -> str:
    """How a node is shown: IT's name for it, else host:port."""
    return policy.terms(url).name or urlsplit(url).netloc or url


@dataclass(frozen=True, slots=True)
class Capacity:
    """What a piece of work may plan for on the place it will most likely run on."""

    context_tokens: int  # the most one request may use there, prompt and answer
    parallel: int  # requests it can take at once now
    client: OpenAIClient | None  # for counting tokens with its tokenizer; None: estimate
    model: str


@dataclass(eq=False)
class Place:
    """One place work can run: an office node or the Local GPUs, and what is known of it."""

    name: str
    tier: Tier
    backend: OfficeNode | LocalGPUs
    usd_per_million_tokens: Decimal = Decimal(0)
    info: NodeInfo | None = None
    load: NodeLoad | None = None
    load_at: float = -math.inf
    answering: bool | None = None  # None: not asked yet
    error: errors.SwitchboardError | None = None
    checked_at: float = -math.inf
    latency_ms: float | None = None
    in_flight: int = 0  # this app's requests running there now

    @property
    def context_tokens(self) -> int | None:
        if self.tier is Tier.LOCAL_GPUS:
            split = self.backend.split if isinstance(self.backend, LocalGPUs) else None
            return split.n_ctx if split is not None else None
        return self.info.context_tokens if self.info else None

    @property
    def slots(self) -> int:
        return self.info.slots if self.info else 1

    @property
    def busy(self) -> int:
        """Requests running or waiting there: the node's own count where it gives one
        (other users' included), never less than this app's own."""
        reported = self.load.running + self.load.waiting if self.load else 0
        return max(reported, self.in_flight)

    @property
    def free(self) -> int:
        return max(0, self.slots - self.busy)

    def fits(self, prompt_tokens: int) -> bool:
        context = self.context_tokens
        return context is None or prompt_tokens + MIN_ANSWER_TOKENS <= context

    def cost_micro_usd(self, tokens: int) -> int:
        return int((self.usd_per_million_tokens * tokens).to_integral_value(ROUND_CEILING))


class NoPlaceAnswers(errors.NodeUnreachable):
    message = "No office node is answering."
    hint = ("Check that you're on the office network; if it keeps happening, tell IT "
            "which nodes Settings lists.")


@dataclass
class Pool:
    """The execution backend of the workspace; see the module's docstring.

    Implements the `Backend` protocol, with `capacity()` for work that plans its parts
    (summaries), `refresh()` for the background check and `avoid` for a retry elsewhere.
    """

    settings: Settings
    places: list[Place]
    name: str = "Office node"
    _checking: dict[int, asyncio.Task[None]] = field(default_factory=dict, init=False)
    _reading: dict[int, asyncio.Task[None]] = field(default_factory=dict, init=False)

    @classmethod
    def build(cls, settings: Settings, policy: Policy, token: str | None, *,
              local: LocalGPUs | None = None) -> Pool:
        """The places the settings name: Local GPUs alone when chats run there; else the
        office nodes in order, then Local GPUs when the user allows the fallback."""
        if settings.backend == RunOn.LOCAL_GPUS:
            assert local is not None, "Local GPUs needs its backend"
            return cls(settings, [Place("Local GPUs", Tier.LOCAL_GPUS, local)], "Local GPUs")
        places = [Place(node_name(url, policy), Tier.OFFICE_NODE,
                        OfficeNode(settings, token, url=url),
                        policy.terms(url).usd_per_million_tokens)
                  for url in settings.node_urls]
        if local is not None and settings.local_fallback and settings.model_path:
            places.append(Place("Local GPUs", Tier.LOCAL_GPUS, local))
        return cls(settings, places, "Office nodes" if len(settings.node_urls) > 1
                   else "Office node")

    # The Backend protocol ------------------------------------------------------------

    def describe(self) -> str:
        answering = [p.name for p in self.places if p.answering]
        return f"{self.name} · {', '.join(answering or [p.name for p in self.places])}"

    @property
    def nodes(self) -> list[Place]:
        return [p for p in self.places if p.tier is Tier.OFFICE_NODE]

    @property
    def local(self) -> LocalGPUs | None:
        for place in self.places:
            if isinstance(place.backend, LocalGPUs):
                return place.backend
        return None

    async def health(self) -> Health:
        await self.refresh()
        return self.snapshot()

    def snapshot(self) -> Health:
        """The pool's state as last checked (no I/O): ok when any place answers."""
        nodes = tuple(NodeHealth(p.name, p.tier.label, bool(p.answering), p.busy, p.slots,
                                 p.context_tokens, p.info.engine if p.info else "",
                                 p.error.title if p.error else "") for p in self.places)
        answering = [p for p in self.places if p.answering]
        models = sorted({m for p in answering for m in (p.info.models if p.info else ())})
        if answering:
            latencies = [p.latency_ms for p in answering if p.latency_ms is not None]
            return Health(ok=True, latency_ms=min(latencies) if latencies else None,
                          models=models, nodes=nodes)
        return Health(ok=False, error=self._nobody_error(), nodes=nodes)

    async def aclose(self) -> None:
        checks = [*self._checking.values(), *self._reading.values()]
        for task in checks:
            task.cancel()
        await asyncio.gather(*checks, return_exceptions=True)
        for place in self.places:
            await place.backend.aclose()

    # Checking places -------------------------------------------------------------------

    async def refresh(self) -> None:
        """Check every place now: what it serves, whether it answers, how busy it is."""
        await asyncio.gather(*(asyncio.shield(self._check(p)) for p in self.places))

    def _check(self, place: Place) -> asyncio.Task[None]:
        """One check of a place at a time: a request and the background timer asking at
        once share it."""
        return _one_at_a_time(self._checking, place, self._check_now)

    async def _check_now(self, place: Place) -> None:
        started = time.monotonic()
        if isinstance(place.backend, LocalGPUs):
            health = await place.backend.health()
            place.answering, place.error = health.ok, health.error
            place.info = NodeInfo("llama.cpp on this computer", tuple(health.models),
                                  place.context_tokens, 1)
        else:
            node = place.backend
            try:
                place.info = await discover(node.client, node.model)
                place.answering, place.error = True, None
                node.choose_model(place.info.models)
                if place.info.load_from:
                    place.load, place.load_at = await read_load(node.client, place.info), \
                        time.monotonic()
            except errors.SwitchboardError as e:
                was = place.answering
                place.answering, place.error = False, e
                if was is not False:
                    log.warning("office node %s is not answering: %s", place.name, e.detail)
        place.latency_ms = (time.monotonic() - started) * 1000
        place.checked_at = time.monotonic()

    def _read_load(self, place: Place) -> asyncio.Task[None]:
        """One load reading of a place at a time: parts of a summary starting together
        share it."""
        return _one_at_a_time(self._reading, place, self._read_load_now)

    async def _read_load_now(self, place: Place) -> None:
        assert place.info is not None and isinstance(place.backend, OfficeNode)
        try:
            place.load = await read_load(place.backend.client, place.info)
            place.load_at = time.monotonic()
        except errors.SwitchboardError as e:
            if place.in_flight:
                # Busy with this app's own answers (a server with few HTTP threads can't
                # say how busy it is while they stream): full, not down.
                place.load = NodeLoad(place.slots, place.slots)
                place.load_at = time.monotonic()
            else:
                # It took the connection but could not say how busy it is in time: stuck.
                self._mark_down(place, e)

    def _mark_down(self, place: Place, error: errors.SwitchboardError) -> None:
        if place.answering is not False:
            log.warning("%s is not answering: %s", place.name, error.detail)
        place.answering, place.error, place.checked_at = False, error, time.monotonic()

    async def candidates(self, prompt_tokens: int, avoid: Sequence[str] = ()) -> list[Place]:
        """The places to try for a request, best first: answering office nodes whose
        context fits, least busy first (then in the order set up), then the fallback."""
        now = time.monotonic()
        nodes = [p for p in self.nodes if p.name not in avoid]
        unknown = [p for p in nodes if p.answering is None
                   or not p.answering and now - p.checked_at > RECHECK_S]
        stale = [p for p in nodes if p.answering and p.info and p.info.load_from
                 and now - p.load_at > LOAD_MAX_AGE_S]
        # Shielded: the checks are shared, and one request cancelled must not cancel
        # them for the others.
        await asyncio.gather(*(asyncio.shield(self._check(p)) for p in unknown),
                             *(asyncio.shield(self._read_load(p)) for p in stale))
        chosen = self._best(nodes, prompt_tokens)
        locals_ = [p for p in self.places if p.tier is Tier.LOCAL_GPUS and p.name not in avoid]
        if not chosen and not locals_ and (again := [p for p in nodes if p not in unknown]):
            # Nothing answers, and nothing else can. A node marked down moments ago (it went
            # silent, or its answer broke off) may be back: ask it now, not refuse unasked.
            await asyncio.gather(*(asyncio.shield(self._check(p)) for p in again))
            chosen = self._best(nodes, prompt_tokens)
        return chosen + locals_

    def _best(self, nodes: Sequence[Place], prompt_tokens: int) -> list[Place]:
        """The answering nodes whose context fits, least busy first (then in the order set
        up); when none fits, the one with the largest context (its refusal says why)."""
        order = {id(p): i for i, p in enumerate(self.places)}
        answering = [p for p in nodes if p.answering]
        fitting = [p for p in answering if p.fits(prompt_tokens)]
        return sorted(fitting, key=lambda p: (p.busy / p.slots, order[id(p)])) or sorted(
            answering, key=lambda p: -(p.context_tokens or DEFAULT_CONTEXT))[:1]

    async def capacity(self) -> Capacity:
        """The context and free slots of the place work would go to now."""
        places = await self.candidates(0)
        if not places:
            raise self._nobody_error()
        best = places[0]
        if isinstance(best.backend, LocalGPUs):
            await asyncio.to_thread(best.backend.prepare)
            return Capacity(best.context_tokens or DEFAULT_CONTEXT, 1, None, "")
        return Capacity(best.context_tokens or DEFAULT_CONTEXT, max(1, best.free),
                        best.backend.client, best.backend.model)

    def _nobody_error(self) -> errors.SwitchboardError:
        if not self.places:
            return errors.NotConfigured()
        if len(self.places) == 1 and self.places[0].error is not None:
            return self.places[0].error
        down = "; ".join(f"{p.name}: {p.error.title if p.error else 'not checked yet'}"
                         for p in self.places)
        return NoPlaceAnswers(down)

    # Streaming -------------------------------------------------------------------------

    async def stream_chat(self, messages: ChatMessages, *, max_tokens: int | None = None,
                          temperature: float | None = None,
                          response_format: Mapping[str, Any] | None = None,
                          avoid: Sequence[str] = ()) -> AsyncGenerator[StreamEvent, None]:
        """Stream the answer from the best place, moving on while none has answered.

        Raises the last place's error when every place failed before its first word; a
        fault after it raises that place's error with the text received in `partial`.
        `avoid` names places to pass over (where an answer was cut off) while another can
        take the request.
        """
        prompt_tokens = estimate_tokens(messages)
        places = await self.candidates(prompt_tokens, avoid)
        if not places and avoid:  # nowhere else: the place to avoid may answer again
            places = await self.candidates(prompt_tokens)
        if not places:
            raise self._nobody_error()
        wanted = max_tokens if max_tokens is not None else self.settings.max_tokens
        started_at, t0 = datetime.now(UTC), time.monotonic()
        # Nodes passed over because they are not answering count as fallbacks taken.
        tried = [p.name for p in self.nodes
                 if p.answering is False and p not in places and p.name not in avoid]
        for i, place in enumerate(places):
            attempt = _Attempt(place, CallTrace(prompt_tokens, started_at, t0), tuple(tried))
            trace = attempt.trace
            context = place.context_tokens
            answer_tokens = wanted if context is None else max(
                MIN_ANSWER_TOKENS, min(wanted, context - prompt_tokens))
            place.in_flight += 1
            try:
                async with contextlib.aclosing(place.backend.stream_chat(
                        messages, max_tokens=answer_tokens, temperature=temperature,
                        response_format=response_format)) as stream:
                    async for event in stream:
                        trace.seen(event)
                        if not isinstance(event, Finished):  # passed on once recorded
                            yield event
            except errors.SwitchboardError as e:
                if is_down(e):
                    self._mark_down(place, e)
                if trace.text or e.partial or i == len(places) - 1:
                    await attempt.record(Outcome.CUT_OFF if trace.text or e.partial
                                         else Outcome.FAILED, type(e).__name__)
                    raise
                log.warning("%s failed before answering (%s); trying %s", place.name,
                            e.detail or e.title, places[i + 1].name)
                tried.append(place.name)
                continue
            except (asyncio.CancelledError, GeneratorExit):
                with contextlib.suppress(Exception):
                    await asyncio.shield(attempt.record(Outcome.CANCELLED))
                raise
            finally:
                place.in_flight -= 1
            place.answering, place.error = True, None
            finished = trace.finished or Finished("".join(trace.text), None, None)
            await attempt.record(Outcome.OK)
            yield finished
            return


def _one_at_a_time(running: dict[int, asyncio.Task[None]], place: Place,
                   work: Callable[[Place], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
    """The task doing `work` for `place` now, started if none is."""
    task = running.get(id(place))
    if task is None or task.done():
        task = asyncio.ensure_future(work(place))
        running[id(place)] = task
    return task


@dataclass
class _Attempt:
    """One try of a request on one place, traced for the record of calls."""

    place: Place
    trace: CallTrace
    fallback_from: tuple[str, ...]

    async def record(self, outcome: str, error: str = "") -> None:
        place, trace = self.place, self.trace
        prompt, completion, _ = trace.tokens()
        await record_call(trace.facts(
            tier=place.tier, node=place.name, model=getattr(place.backend, "model", ""),
            cost_micro_usd=place.cost_micro_usd(prompt + completion), outcome=outcome,
            fallback_from=self.fallback_from, error=error))
