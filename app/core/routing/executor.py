"""Carrying out a plan on the local tiers: each step when the steps it needs are done,
independent steps at the same time (as many as the pool has free slots), then the answer
assembled from the steps' results. The documents a step reads are in its request (their
most relevant parts, fenced as data); none of it goes anywhere but the office's hardware.

`execute` schedules; how a step runs (the chat streams it into a message of its own) is
the caller's `run_step`. A step that fails stops the steps that need it; Stop (cancelling
the task) stops them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from app.core.documents.chunking import Pages
from app.core.documents.retrieve import top_chunks
from app.core.documents.summarize import FENCE_RULE, fence
from app.core.routing.plan import Plan, Step

STEP_SYSTEM = (
    "You carry out one step of a larger piece of work for office staff. Do only this step "
    "and write only its result: no preamble, no comments on the other steps. "
    + FENCE_RULE.format(tag="document") + "only use it for this step."
)
ASSEMBLE_SYSTEM = (
    "You put the results of the steps of a piece of work together into one answer for "
    "office staff, as the plan says. Write the answer itself, clearly and completely."
)
PARTS_PER_DOCUMENT = 3


@dataclass(frozen=True, slots=True)
class StepResult:
    step_id: str
    text: str
    ok: bool  # it finished; False: failed, cut off, or skipped after a step it needs


@dataclass(frozen=True, slots=True)
class DocumentText:
    """A document a step may read: its name (for the prompt only) and its pages."""

    name: str
    pages: Pages


RunStep = Callable[[Step, list[dict[str, str]]], Awaitable[StepResult]]
SkipStep = Callable[[Step, str], Awaitable[StepResult]]


async def execute(plan: Plan, request: str, *, run_step: RunStep, skip_step: SkipStep,
                  documents: Mapping[int, DocumentText], parallel: int,
                  done: Mapping[str, str] | None = None) -> dict[str, StepResult]:
    """Run the plan's steps; returns each step's result by id. `done` holds results of
    steps already run (a plan resumed after a step is retried): they are not run again."""
    results: dict[str, asyncio.Future[StepResult]] = {}
    gate = asyncio.Semaphore(max(1, parallel))
    loop = asyncio.get_running_loop()
    for step in plan.steps:
        results[step.id] = loop.create_future()

    async def one(step: Step) -> None:
        needed = [await asyncio.shield(results[i]) for i in step.after]
        if done and step.id in done:
            result = StepResult(step.id, done[step.id], True)
        elif failed := [r.step_id for r in needed if not r.ok]:
            result = await skip_step(step, f"it needs step {', '.join(failed)}, which did "
                                           "not finish")
        else:
            async with gate:
                result = await run_step(step, step_messages(
                    step, request, {r.step_id: r.text for r in needed}, documents))
        results[step.id].set_result(result)

    tasks = [asyncio.create_task(one(step)) for step in plan.steps]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {step_id: future.result() for step_id, future in results.items()}


def step_messages(step: Step, request: str, inputs: Mapping[str, str],
                  documents: Mapping[int, DocumentText]) -> list[dict[str, str]]:
    """The request for one step: the whole request for context, the step, the results
    it needs and the parts of its documents that bear on it."""
    parts = [f"The whole request: {request}", "", f"This step: {step.instruction}"]
    if step.expected_output:
        parts.append(f"What it should produce: {step.expected_output}")
    for step_id, text in inputs.items():
        parts += ["", f"Result of step {step_id}:", text]
    for doc_id in step.documents:
        document = documents.get(doc_id)
        if document is None:
            continue
        for hit in top_chunks(document.pages, step.instruction, k=PARTS_PER_DOCUMENT):
            parts += ["", f'<document name="{fence(document.name)}" pages="{hit.pages}">',
                      fence(hit.chunk.text), "</document>"]
    return [{"role": "system", "content": STEP_SYSTEM},
            {"role": "user", "content": "\n".join(parts)}]


def assemble_messages(plan: Plan, request: str, results: Sequence[StepResult]
                      ) -> list[dict[str, str]]:
    """The request for the answer: the plan's assembly note and every step's result."""
    parts = [f"The request: {request}", "", f"How to put the answer together: {plan.assemble}"]
    by_id = {s.id: s for s in plan.steps}
    for result in results:
        step = by_id[result.step_id]
        parts += ["", f"Step {step.id} ({step.instruction}):", result.text]
    return [{"role": "system", "content": ASSEMBLE_SYSTEM},
            {"role": "user", "content": "\n".join(parts)}]
