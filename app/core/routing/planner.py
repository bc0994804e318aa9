"""Getting a plan: from the cloud planner when the router says so, else (or when the
cloud fails, refuses or answers with something that is not a plan) from the local model,
else the request as one step. Every way ends with a plan and says, in words, where it
was made and why.

What the cloud is sent is the brief (`planning_brief`): the request with material the
user pasted replaced by a placeholder with its length, and the chat's documents as opaque
ids with only their type and page count. No document text, no file name, no pasted text:
the privacy check in the OpenRouter client refuses any request that carries them anyway.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from app.core import errors
from app.core.cloud import CloudPlanner
from app.core.llm.backend import Backend
from app.core.llm.openai_client import Delta, Finished, StreamEvent
from app.core.routing import record
from app.core.routing.plan import (
    LOCAL_SCHEMA,
    SCHEMA,
    Plan,
    PlanInvalid,
    parse_plan,
    repair,
    single_step,
)
from app.core.routing.router import Route

log = logging.getLogger(__name__)

LOCAL_PLAN_TOKENS = 1500  # a plan of up to six steps, in JSON
# A request that is more than this share pasted material is never planned in the cloud:
# what it asks is about that material, which the cloud can't see.
MOSTLY_PASTED = 0.5

PLANNER_SYSTEM = (
    "You plan work for office staff that smaller local models will carry out, step by "
    "step. Reply with JSON only, in this schema: {\"goal\": text, \"steps\": [{\"id\": "
    "\"s1\", \"instruction\": text, \"inputs\": [ids], \"expected_output\": text}], "
    "\"assemble\": text}. Use 1 to 8 steps; a step's inputs name the documents it reads "
    "(doc:<id>, from the list given) and the earlier steps whose results it needs; steps "
    "without shared inputs can run at the same time. Each instruction must be doable by a "
    "model that sees only that step's inputs. You cannot see the documents or pasted "
    "material: refer to them, never invent their content. Do not do the work yourself."
)


@dataclass(frozen=True, slots=True)
class DocumentRef:
    """A document as the planner may know it: an id, its type and its length."""

    id: int
    kind: str
    pages: int


@dataclass(frozen=True, slots=True)
class Request:
    """What the user asked, and what came with it."""

    text: str  # as typed, pasted material included
    pasted: tuple[str, ...] = ()  # material pasted into it: local only
    documents: tuple[DocumentRef, ...] = ()  # the chat's documents

    @property
    def pasted_share(self) -> float:
        pasted = sum(len(p) for p in self.pasted if p in self.text)
        return pasted / len(self.text) if self.text else 0.0

    def brief_text(self) -> str:
        """The request with each pasted passage replaced by a placeholder."""
        text = self.text
        for n, passage in enumerate(self.pasted, 1):
            if passage:
                text = text.replace(passage, f"[pasted text #{n}, {len(passage)} characters: "
                                             "kept on this computer]")
        return text


@dataclass(frozen=True, slots=True)
class Planned:
    plan: Plan
    where: str  # "cloud", "local" or "one step"
    why: str  # in words: the route's reason, or why it fell back


def planning_brief(request: Request) -> list[dict[str, str]]:
    """What the planner is sent (the cloud's and the local model's alike)."""
    lines = [f"Request: {request.brief_text()}"]
    if request.documents:
        lines.append("Documents in this chat (their text stays on this computer):")
        lines += [f"- doc:{d.id}: a {d.kind.upper() or 'document'} of {d.pages} page"
                  f"{'s' if d.pages != 1 else ''}" for d in request.documents]
    return [{"role": "system", "content": PLANNER_SYSTEM},
            {"role": "user", "content": "\n".join(lines)}]


async def make_plan(request: Request, route: Route, *, local: Backend,
                    cloud: Callable[[], CloudPlanner] | None,
                    on_cloud: Callable[[int], None] = lambda most: None) -> Planned:
    """A plan for `request`. The cloud is asked only when `route` plans there and the
    request isn't mostly pasted material; `on_cloud` is told the most that call may cost
    before it is made."""
    documents = {d.id for d in request.documents}
    why = route.reason
    if route.plan_in_cloud and request.pasted_share > MOSTLY_PASTED:
        why = "the request is mostly pasted material, which stays on this computer"
    elif route.plan_in_cloud and cloud is not None:
        try:
            with record.purpose("plan"):
                reply = await _collect(cloud().plan(planning_brief(request), schema=SCHEMA,
                                                    on_reserved=on_cloud))
            return Planned(_checked(reply, documents, "in the cloud"), "cloud", route.reason)
        except PlanInvalid as e:
            why = f"the cloud planner's plan was not usable ({e})"
        except errors.SwitchboardError as e:
            why = e.title.rstrip(".") + (f" ({e.detail})" if e.detail else "")
        log.warning("planning locally: %s", why)
    try:
        with record.purpose("plan"):
            reply = await _collect(local.stream_chat(
                planning_brief(request), max_tokens=LOCAL_PLAN_TOKENS, temperature=0.2,
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "plan", "schema": LOCAL_SCHEMA}}))
        return Planned(_checked(reply, documents, "on the office's hardware"), "local", why)
    except (PlanInvalid, errors.SwitchboardError) as e:
        log.warning("the local plan was not usable (%s); answering in one step", e)
        return Planned(single_step(request.text), "one step", why)


def _checked(reply: str, documents: set[int], made: str) -> Plan:
    """The plan in `reply`, after one repair attempt if it needs it."""
    try:
        plan = parse_plan(reply, documents)
    except (PlanInvalid, ValueError):
        try:
            plan = parse_plan(repair(reply, documents), documents)
        except ValueError as e:  # PlanInvalid, or JSON that is still broken
            raise PlanInvalid(str(e) if isinstance(e, PlanInvalid) else "not JSON") from None
    return Plan(plan.goal, plan.steps, plan.assemble, made=made)


async def _collect(stream: AsyncGenerator[StreamEvent, None]) -> str:
    parts: list[str] = []
    async with contextlib.aclosing(stream) as events:
        async for event in events:
            if isinstance(event, Delta) or isinstance(event, Finished) and not parts:
                parts.append(event.text)
    return "".join(parts)


def plan_json(plan: Plan) -> str:
    return json.dumps(plan.to_json())
