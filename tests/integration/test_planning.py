"""Plan in the cloud, execute locally: the router's decision, the plan kept in the chat
and followed by the local model, and the fall-back to local planning when the cloud
refuses (credit, budget) — the answer still comes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from app.core import secrets
from app.core.chat import PLAN_PREFIX, ChatEvent
from app.core.settings import Settings
from app.core.workspace import Workspace
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.openrouter_server import API_KEY, OpenRouterServer


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenRouterServer]:
    secrets.set_secret(secrets.OPENROUTER_KEY, API_KEY)
    with OpenRouterServer() as server:
        monkeypatch.setenv("SWITCHBOARD_OPENROUTER_URL", server.base_url)
        yield server


def ask(node: FaultServer, prompt: str, **settings: object) -> Workspace:
    Settings().changed(node_urls=[node.base_url], planner_model="stand-in/planner",
                       planner_max_tokens=64, **settings).save()
    workspace = Workspace.open()

    async def main() -> None:
        chat = workspace.history.create_chat()
        events: list[ChatEvent] = []
        await workspace.send(chat.id, prompt, events.append)

    asyncio.run(main())
    return workspace


def test_a_cloud_plan_is_kept_and_followed_locally(fault_server: FaultServer,
                                                   cloud: OpenRouterServer) -> None:
    workspace = ask(fault_server, "Plan our office move", mode="plan with cloud",
                    monthly_budget_usd=20)
    messages = workspace.history.messages(workspace.history.chats()[0].id)
    assert [m.role for m in messages] == ["user", "system", "assistant"]
    assert messages[1].content == PLAN_PREFIX + "Step 1: outline. Step 2: draft."
    assert messages[2].status == "complete"
    local = fault_server.requests[-1].json()["messages"]
    assert local[-1] == {"role": "system", "content": messages[1].content}
    sent_to_cloud = cloud.chat_requests()[0].json()["messages"]
    assert sent_to_cloud[-1] == {"role": "user", "content": "Plan our office move"}
    assert workspace.ledger().month_summary().spent_micro_usd > 0


@pytest.mark.parametrize(("setup", "words"), [
    ({"fault": "402"}, "Cloud credit"),
    ({"budget": 0.000001}, "budget is used up"),
])
def test_when_the_cloud_refuses_planning_falls_back_to_local(
        fault_server: FaultServer, cloud: OpenRouterServer, setup: dict[str, object],
        words: str) -> None:
    if "fault" in setup:
        cloud.inject(str(setup["fault"]))
    workspace = ask(fault_server, "Plan our office move", mode="plan with cloud",
                    monthly_budget_usd=float(setup.get("budget", 20)))  # type: ignore[arg-type]
    messages = workspace.history.messages(workspace.history.chats()[0].id)
    assert [m.role for m in messages] == ["user", "system", "assistant"]
    assert messages[1].content.startswith("Planned locally:") and words in messages[1].content
    assert messages[2].status == "complete" and messages[2].content == "Hello, world."
    local = fault_server.requests[-1].json()["messages"]
    assert [m["role"] for m in local] == ["user"]  # the note is not given to the model


def test_local_only_never_calls_the_cloud(fault_server: FaultServer,
                                          cloud: OpenRouterServer) -> None:
    ask(fault_server, "Plan our office move", mode="local only", monthly_budget_usd=20)
    assert cloud.requests == []
