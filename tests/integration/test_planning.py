"""Plan in the cloud, execute locally: a structured plan from the (stand-in) OpenRouter,
its steps carried out on a real llama.cpp node in dependency order (independent ones at
once), the answer assembled there; the plan belongs to its turn; every way the cloud
can fail or answer badly ends with a plan made locally (or one step) and says why;
Stop ends everything; a step cut off part-way is retried without asking the cloud again.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
import socket
from typing import Any

import pytest

from app.core import secrets
from app.core.chat import ChatEvent, MessageChanged, TextAppended
from app.core.history import Message
from app.core.routing.plan import Plan
from app.core.routing.router import Override
from app.core.settings import Settings
from app.core.workspace import Workspace
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.llama_cpp_server import LlamaCppServer
from tests.fixtures.openrouter_server import DEFAULT_PLAN, OpenRouterServer
from tests.fixtures.policy_files import write_policy
from tests.fixtures.records import recorded_calls

REQUEST = "Plan our office move: what each team must do, and draft the note to staff."


def open_workspace(node: LlamaCppServer | FaultServer, **settings: Any) -> Workspace:
    if isinstance(node, LlamaCppServer):
        secrets.set_secret(secrets.NODE_TOKEN, node.api_key)
    values: dict[str, Any] = {"node_urls": [node.base_url], "planner_model": "stand-in/planner",
                              "planner_max_tokens": 400, "monthly_budget_usd": 20,
                              "mode": "plan with cloud", "max_tokens": 24}
    Settings().changed(**{**values, **settings}).save()
    return Workspace.open()


def run(workspace: Workspace, prompt: str = REQUEST, events: list[ChatEvent] | None = None,
        **options: Any) -> list[Message]:
    """Send in a new chat; the chat's messages afterwards."""
    seen = events if events is not None else []

    async def main() -> list[Message]:
        chat = workspace.history.create_chat()
        try:
            await workspace.send(chat.id, prompt, seen.append, **options)
            return workspace.history.messages(chat.id)
        finally:
            await workspace.close()

    return asyncio.run(main())


def steps_of(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.kind == "step"]


# ---------------------------------------------------------------- the plan, run locally


def test_a_cloud_plan_runs_step_by_step_on_the_office_node(
        llama_cpp_node: LlamaCppServer, cloud: OpenRouterServer) -> None:
    workspace = open_workspace(llama_cpp_node)
    events: list[ChatEvent] = []
    messages = run(workspace, events=events)
    user, note = messages[0], messages[1]
    # Before the cloud call the chat said why it plans there and the most it may cost.
    before = [e.message.content for e in events
              if isinstance(e, MessageChanged) and e.message.kind == "plan"]
    # 400 tokens of plan at $15 a million, and the brief's tokens at $3 a million.
    assert re.fullmatch(r"Planning in the cloud: you chose Plan with cloud\. This costs at "
                        r"most \$0\.00(6|7)\d\.", before[0])
    steps, answer = steps_of(messages), messages[-1]
    assert (user.role, note.kind, answer.kind) == ("user", "plan", "")
    # The plan, as the chat shows it, and what it cost.
    assert note.content.startswith("**Plan:** Carry out the request in three steps.")
    assert "Planned in the cloud because you chose Plan with cloud; it cost $" in note.content
    assert json.loads(note.data)["steps"][2]["inputs"] == ["s1", "s2"]
    # Each step ran on the office node and finished; the answer was assembled there.
    assert [json.loads(s.data)["step"] for s in steps] in (["s1", "s2", "s3"],
                                                           ["s2", "s1", "s3"])
    node_name = llama_cpp_node.root_url.split("//")[1]
    assert all(s.status == "complete" and s.content and s.ran_on == node_name for s in steps)
    assert answer.status == "complete" and answer.content and answer.route == "cloud plan"
    assert answer.cost_micro_usd == note.cost_micro_usd > 0
    # The cloud was asked once, for structured output, with only the request.
    (asked,) = cloud.chat_requests()
    body = asked.json()
    assert body["response_format"]["type"] == "json_schema"
    assert REQUEST in body["messages"][-1]["content"]
    # The record: one plan in the cloud, three steps and the assembly on the node.
    record = recorded_calls()
    assert [(c.tier, c.purpose) for c in record if c.tier == "cloud"] == [("cloud", "plan")]
    local = [c for c in record if c.tier == "office_node"]
    assert sorted(c.purpose for c in local) == ["assembly", "step", "step", "step"]
    assert {c.workflow for c in record} == {"planned_task"}
    # s1 and s2 needed nothing: they ran at the same time; s3 only after both.
    s1, s2, s3 = sorted((c for c in local if c.purpose == "step"), key=lambda c: c.at)
    end = [c.at.timestamp() + c.total_ms / 1000 for c in (s1, s2)]
    assert s2.at.timestamp() < end[0] and s3.at.timestamp() >= max(end) - 0.001


def test_a_plan_belongs_to_its_turn(llama_cpp_node: LlamaCppServer,
                                    cloud: OpenRouterServer) -> None:
    workspace = open_workspace(llama_cpp_node)

    async def main() -> list[dict[str, str]]:
        chat = workspace.history.create_chat()
        try:
            await workspace.send(chat.id, REQUEST, lambda e: None)
            return workspace.chat_service.context(chat.id)
        finally:
            await workspace.close()

    context = asyncio.run(main())
    # A later turn sees the request and its answer: not the plan, not the steps.
    assert [m["role"] for m in context] == ["user", "assistant"]
    assert "Plan:" not in json.dumps(context)


def test_the_plan_can_be_reviewed_and_edited_before_it_runs(
        llama_cpp_node: LlamaCppServer, cloud: OpenRouterServer) -> None:
    workspace = open_workspace(llama_cpp_node)
    shown: list[Plan] = []

    async def without_s2(plan: Plan) -> Plan | None:
        shown.append(plan)
        return plan.without("s2")

    messages = run(workspace, review=without_s2)
    assert [s.id for s in shown[0].steps] == ["s1", "s2", "s3"]
    assert [json.loads(s.data)["step"] for s in steps_of(messages)] == ["s1", "s3"]
    assert "edited before it ran" in messages[1].content
    assert messages[-1].status == "complete"

    async def refuse(plan: Plan) -> Plan | None:
        return None

    refused = run(open_workspace(llama_cpp_node), review=refuse)
    assert steps_of(refused) == [] and refused[-1].status == "cancelled"
    assert "You stopped the plan before it ran" in refused[-1].error


# ---------------------------------------------------------------- when the cloud can't


def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/api/v1"


@pytest.mark.parametrize(("setup", "words"), [
    ("402", "Cloud credit or the key's limit is used up"),
    ("budget", "This month's cloud planning budget is used up"),
    ("no key", "no OpenRouter key is saved"),
    ("unreachable", "can't be reached"),
    ("policy", "IT has turned cloud planning off"),
])
def test_when_the_cloud_cant_plan_it_is_planned_locally_and_says_why(
        llama_cpp_node: LlamaCppServer, cloud: OpenRouterServer, monkeypatch: pytest.MonkeyPatch,
        setup: str, words: str) -> None:
    settings: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if setup == "402":
        cloud.inject("402")
    elif setup == "budget":
        settings["monthly_budget_usd"] = 0.000001
    elif setup == "no key":
        secrets.delete_secret(secrets.OPENROUTER_KEY)
    elif setup == "unreachable":
        monkeypatch.setenv("SWITCHBOARD_OPENROUTER_URL", closed_url())
    else:
        write_policy({"cloud_allowed": False})
        options["override"] = Override.PLAN  # the mode is Local only; the user asks anyway
    messages = run(open_workspace(llama_cpp_node, **settings), **options)
    note, answer = messages[1], messages[-1]
    assert note.kind == "plan"
    assert note.content.startswith("**Plan:**") and (
        "Planned locally: " in note.content or "Answered in one step: " in note.content)
    assert words in note.content
    assert answer.status == "complete" and answer.route == "local plan"
    assert [c for c in recorded_calls() if c.tier == "cloud" and c.cost_micro_usd] == []
    assert all(r.json().get("response_format") for r in cloud.chat_requests())  # plans only


@pytest.mark.parametrize("cloud", [{"plan": "Here is the plan: {not json at all"}],
                         indirect=True)
def test_a_plan_that_is_not_json_is_made_locally_instead(
        llama_cpp_node: LlamaCppServer, cloud: OpenRouterServer) -> None:
    messages = run(open_workspace(llama_cpp_node))
    assert "the cloud planner's plan was not usable" in messages[1].content
    assert len(cloud.chat_requests()) == 1  # no second paid try
    assert messages[-1].status == "complete"


CUT = json.dumps(DEFAULT_PLAN)
CUT = CUT[:CUT.index('{"id": "s3"')]  # the reply ends after two whole steps


@pytest.mark.parametrize("cloud", [{"plan": CUT}], indirect=True)
def test_a_plan_cut_off_is_repaired_to_its_whole_steps(
        llama_cpp_node: LlamaCppServer, cloud: OpenRouterServer) -> None:
    messages = run(open_workspace(llama_cpp_node))
    assert "Planned in the cloud" in messages[1].content
    assert [json.loads(s.data)["step"] for s in steps_of(messages)] in (["s1", "s2"],
                                                                        ["s2", "s1"])
    assert messages[-1].status == "complete"


def test_a_single_step_request_is_not_planned(llama_cpp_node: LlamaCppServer,
                                              cloud: OpenRouterServer) -> None:
    messages = run(open_workspace(llama_cpp_node, mode="auto"),
                   "What is the project deadline?")
    assert [m.role for m in messages] == ["user", "assistant"]
    assert cloud.requests == []


# ---------------------------------------------------------------- stop and retry


def test_stop_ends_every_step_in_flight(slow_model_path: pathlib.Path,
                                        cloud: OpenRouterServer) -> None:
    with LlamaCppServer(slow_model_path, parallel=4, ctx=8192) as slow:
        workspace = open_workspace(slow, max_tokens=2000)
        events: list[ChatEvent] = []

        async def main() -> list[Message]:
            chat = workspace.history.create_chat()
            task = asyncio.create_task(workspace.send(chat.id, REQUEST, events.append))
            while sum(isinstance(e, TextAppended) for e in events) < 4:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            try:
                return workspace.history.messages(chat.id)
            finally:
                await workspace.close()

        messages = asyncio.run(main())
        busy = slow.busy_slots()
    steps = steps_of(messages)
    assert steps and all(s.status == "cancelled" for s in steps)
    assert not [m for m in messages if m.status == "streaming"]
    assert busy == 0  # nothing is still being written for an answer nobody will see


def test_a_step_cut_off_is_retried_without_asking_the_cloud_again(
        fault_server: FaultServer, cloud: OpenRouterServer) -> None:
    fault_server.set_scenario("close_mid_stream", chunks=["Part of ", "a step"])
    workspace = open_workspace(fault_server)

    async def main() -> tuple[list[Message], list[Message]]:
        chat = workspace.history.create_chat()
        try:
            await workspace.send(chat.id, REQUEST, lambda e: None)
            first = workspace.history.messages(chat.id)
            fault_server.set_scenario("ok", chunks=["A whole ", "step."])
            note = next(m for m in first if m.kind == "plan")
            await workspace.retry_plan(note.id, lambda e: None)
            return first, workspace.history.messages(chat.id)
        finally:
            await workspace.close()

    first, after = asyncio.run(main())
    cut = steps_of(first)
    # s1 and s2 were cut off part-way, their text kept; s3, which needs them, never ran.
    assert [s.status for s in cut if json.loads(s.data)["step"] != "s3"] == ["interrupted"] * 2
    assert all(s.content == "Part of a step" for s in cut if s.status == "interrupted")
    assert [s.status for s in cut if json.loads(s.data)["step"] == "s3"] == ["cancelled"]
    assert first[-1].status == "error" and "did not finish" in first[-1].error
    assert [json.loads(s.data)["step"] for s in steps_of(after)] in (
        ["s1", "s2", "s3"], ["s2", "s1", "s3"])
    assert all(s.status == "complete" for s in steps_of(after))
    assert after[-1].status == "complete" and after[-1].content == "A whole step."
    assert len(cloud.chat_requests()) == 1  # nothing is silently re-sent to the cloud


def test_the_command_line_runs_the_same_pipeline(llama_cpp_node: LlamaCppServer,
                                                 cloud: OpenRouterServer) -> None:
    import io

    from app import cli

    open_workspace(llama_cpp_node, mode="local only")
    out, err = io.StringIO(), io.StringIO()
    assert cli.ask(REQUEST, plan="cloud", as_json=True, out=out, err=err) == 0, err.getvalue()
    result = json.loads(out.getvalue())
    assert result["plan"]["where"] == "cloud"
    assert result["plan"]["why"].startswith("Planned in the cloud because you asked to plan")
    assert [s["id"] for s in result["steps"]] in (["s1", "s2", "s3"], ["s2", "s1", "s3"])
    node_name = llama_cpp_node.root_url.split("//")[1]
    assert all(s["route"] == node_name and s["text"] for s in result["steps"])
    assert result["answer"] and result["status"] == "complete"
    assert err.getvalue().count("switchboard: step ") == 3

    # Planned locally, the steps on stderr and the answer on stdout.
    out, err = io.StringIO(), io.StringIO()
    assert cli.ask(REQUEST, plan="local", out=out, err=err) == 0, err.getvalue()
    assert out.getvalue().strip()
    assert "Planned locally: you asked to plan it locally" in err.getvalue() \
        or "Answered in one step" in err.getvalue()
    assert len(cloud.chat_requests()) == 1  # only the first was planned in the cloud
