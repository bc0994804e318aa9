"""A planned task in a chat: the plan (from the cloud, or made locally) shown as it is
made, each step streamed into a collapsible message of its own as it runs on the office's
hardware, then the answer assembled from the steps. A plan belongs to its turn: later
turns see only the answer.

Before a cloud call the plan's message says the most it may cost; afterwards what it
cost. A step that fails (after its partial text is kept) stops the steps that need it,
and the answer says which step to retry: `resume` runs what is left of the plan again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.core import errors
from app.core.chat import (
    AnswerFinished,
    ChatEvent,
    ChatService,
    MessageAdded,
    MessageChanged,
    MessageRemoved,
)
from app.core.history import History, Message
from app.core.llm.backend import Backend
from app.core.money import format_cost
from app.core.privacy import LOCAL_ONLY
from app.core.routing import record
from app.core.routing.executor import (
    DocumentText,
    StepResult,
    assemble_messages,
    execute,
)
from app.core.routing.plan import Plan, Step, parse_plan
from app.core.routing.planner import DocumentRef, Planned, Request, plan_json

log = logging.getLogger(__name__)

# Asks for a plan: told, when it goes to the cloud, the most that call may cost.
MakePlan = Callable[[Request, Callable[[int], None]], Awaitable[Planned]]
# Shows the plan to the user before it runs: the plan as edited, or None to run nothing.
ReviewPlan = Callable[[Plan], Awaitable[Plan | None]]






@dataclass
class PlannedTask:
    chats: ChatService
    backend: Backend
    emit: Callable[[ChatEvent], None]
    parallel: Callable[[], Awaitable[int]]  # how many steps may run at once now

    @property
    def history(self) -> History:
        return self.chats.history

    async def run(self, chat_id: int, request: Request, make_plan: MakePlan,
                  announce: str, review: ReviewPlan | None = None) -> Message:
        """Plan the request (`announce` says how, in the chat, while it is planned) and
        carry the plan out."""
        history = self.history
        note = history.add_message(chat_id, "system", announce, status="streaming", kind="plan")
        self.emit(MessageAdded(note))

        def on_cloud(most: int) -> None:
            shown = history.message(note.id) or note
            self._change(shown, content=f"{announce} This costs at most {format_cost(most)}.")

        work = record.current_work()
        try:
            planned = await make_plan(request, on_cloud)
        except asyncio.CancelledError:
            self._change(note, status="cancelled")
            raise
        cloud_cost = work.tally.cloud_cost_micro_usd if work else 0
        plan = planned.plan
        self._change(note, content=f"{plan.as_markdown()}\n\n*{_made(planned, cloud_cost)}*",
                     status="complete", data=plan_json(plan), route=_route(planned),
                     cost_micro_usd=cloud_cost)
        if review is not None:
            reviewed = await review(plan)
            if reviewed is None:
                answer = history.add_message(chat_id, "assistant", "", status="streaming")
                self.emit(MessageAdded(answer))
                return self.chats.end_answer(answer, "", "cancelled", errors.PlanNotRun(), "",
                                             self.emit)
            if reviewed != plan:
                plan = reviewed
                self._change(note, content=f"{plan.as_markdown()}\n\n*{_made(planned, cloud_cost)}"
                                           " — edited before it ran*", data=plan_json(plan))
        return await self._carry_out(chat_id, plan, request)

    async def resume(self, plan_message: Message) -> Message:
        """Run what is left of a plan: steps that did not finish (retried), the steps
        after them, and the answer. Finished steps are kept as they are."""
        history = self.history
        messages = history.messages(plan_message.chat_id)
        plan = parse_plan(plan_message.data,
                          {d.id for d in history.documents(plan_message.chat_id)})
        position = next(i for i, m in enumerate(messages) if m.id == plan_message.id)
        prompt = next(m for m in reversed(messages[:position]) if m.role == "user")
        done: dict[str, str] = {}
        for message in messages[position + 1:]:
            if message.kind == "step" and message.status == "complete":
                done[json.loads(message.data)["step"]] = message.content
            if message.kind in ("step", "") and message.role == "assistant" and (
                    message.kind == "" or message.status != "complete"):
                history.delete_message(message.id)
                self.emit(MessageRemoved(message.id))
        request = Request(prompt.content, tuple(json.loads(prompt.pasted or "[]")))
        return await self._carry_out(plan_message.chat_id, plan, request, done)

    async def _carry_out(self, chat_id: int, plan: Plan, request: Request,
                         done: dict[str, str] | None = None) -> Message:
        history = self.history
        documents = {d.id: DocumentText(d.name, history.document_pages(d.id))
                     for d in history.documents(chat_id)
                     if any(d.id in s.documents for s in plan.steps)}

        async def run_step(step: Step, messages: list[dict[str, str]]) -> StepResult:
            message = history.add_message(chat_id, "assistant", "", status="streaming",
                                          kind="step", title=step.instruction,
                                          data=json.dumps({"step": step.id}))
            self.emit(MessageAdded(message))
            started = time.monotonic()
            try:
                with record.part_of_work("step"):
                    ended = await self.chats.stream_answer(message, messages, self.backend,
                                                           self.emit)
            finally:
                seconds = round(time.monotonic() - started, 1)
                history.update_message(message.id, data=json.dumps(
                    {"step": step.id, "seconds": seconds}))
                if (shown := history.message(message.id)) is not None:
                    self.emit(MessageChanged(shown))
            LOCAL_ONLY.mark(ended.content)  # it may carry what it read of a document
            return StepResult(step.id, ended.content, ended.status == "complete")

        async def skip_step(step: Step, why: str) -> StepResult:
            message = history.add_message(chat_id, "assistant", "", status="streaming",
                                          kind="step", title=step.instruction,
                                          data=json.dumps({"step": step.id}))
            self.emit(MessageAdded(message))
            self.chats.end_answer(message, "", "cancelled", errors.SwitchboardError(why), "",
                                  self.emit)
            return StepResult(step.id, "", False)

        results = await execute(plan, request.text, run_step=run_step, skip_step=skip_step,
                                documents=documents, parallel=await self.parallel(),
                                done=done)
        answer = history.add_message(chat_id, "assistant", "", status="streaming")
        self.emit(MessageAdded(answer))
        failed = [s.id for s in plan.steps if not results[s.id].ok]
        if failed:
            failure = errors.StepFailed(f"step {', '.join(failed)}")
            return self.chats.end_answer(answer, "", "error", failure, "", self.emit)
        with record.purpose("assembly"):
            return await self.chats.stream_answer(
                answer, assemble_messages(plan, request.text,
                                          [results[s.id] for s in plan.steps]),
                self.backend, self.emit)

    def _change(self, message: Message, **changes: Any) -> None:
        self.history.update_message(message.id, **changes)
        changed = self.history.message(message.id)
        if changed is not None:
            self.emit(MessageChanged(changed))
            if changed.status != "streaming":
                self.emit(AnswerFinished(changed))


def _made(planned: Planned, cloud_cost: int) -> str:
    if planned.where == "cloud":
        return f"Planned in the cloud because {planned.why}; it cost {format_cost(cloud_cost)}."
    if planned.where == "local":
        return f"Planned locally: {planned.why}."
    return f"Answered in one step: {planned.why}."


def _route(planned: Planned) -> str:
    return "cloud plan" if planned.where == "cloud" else "local plan"


def document_refs(history: History, chat_id: int) -> tuple[DocumentRef, ...]:
    """The chat's documents as the planner may know them."""
    return tuple(DocumentRef(d.id, d.kind, d.pages) for d in history.documents(chat_id)
                 if d.status == "ready")
