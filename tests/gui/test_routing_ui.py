"""The split as the user sees it: each answer's footer says where it ran and what it took;
an answer cut off on one node is continued on another from the banner; "Plan this" and
"Just answer" override the mode for one message; the Usage page shows what the month's
calls came to, in figures and charts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pytestqt.qtbot import QtBot

from app.core import secrets
from app.core.routing.record import Call, CallRecord
from app.core.routing.report import this_month
from app.core.routing.router import Override
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.llama_server import LlamaServer
from tests.fixtures.openrouter_server import API_KEY, OpenRouterServer
from tests.gui.conftest import BuildApp
from tests.gui.test_app import click_action, last_answer_is, messages, type_and_send
from tests.gui.test_planning_ui import answered


def test_each_answer_says_where_it_ran(qtbot: QtBot, build_app: BuildApp,
                                       fault_server: FaultServer) -> None:
    app = build_app(node_urls=[fault_server.base_url])
    type_and_send(qtbot, app, "Hello")
    qtbot.waitUntil(lambda: last_answer_is(app, "complete"), timeout=10_000)
    answer = messages(app)[-1]
    node = fault_server.base_url.split("//")[1].removesuffix("/v1")
    assert answer.ran_on == node and answer.tokens == 9  # the stand-in's usage: 5 + 4
    delegate = app.main_window.chat_view.chat_delegate
    assert delegate.status_text(answer) == f"Ran on {node} · 9 tokens · no cloud cost"
    # As saved: the footer is there when the chat is opened again.
    app.main_window.open_chat(answer.chat_id)
    qtbot.waitUntil(lambda: messages(app) and messages(app)[-1].ran_on == node)


def test_a_cut_off_answer_is_continued_on_another_node_from_its_bubble(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer,
        office_node: LlamaServer) -> None:
    fault_server.set_scenario("close_mid_stream", chunks=["Half ", "an answer"])
    secrets.set_secret(secrets.NODE_TOKEN, office_node.api_key)
    # The stand-in node first: the answer starts there and breaks; the real llama.cpp node
    # continues it (both are sent the llama.cpp node's token; the stand-in takes any).
    app = build_app(node_urls=[fault_server.base_url, office_node.base_url], max_tokens=16)
    window = app.main_window
    type_and_send(qtbot, app, "Tell me a story")
    qtbot.waitUntil(lambda: last_answer_is(app, "interrupted") and not app.controller.busy,
                    timeout=10_000)
    cut = messages(app)[-1]
    assert cut.content == "Half an answer"
    assert not window.error_banner.isVisible()  # said once, in the bubble

    click_action(qtbot, app, cut.id, "continue")
    # Started at once (else the status bar says why: the words in the failure).
    started = messages(app)[-1].status == "streaming" or app.controller.busy
    assert started, (window.statusBar().currentMessage(), app.controller.tier)
    qtbot.waitUntil(lambda: last_answer_is(app, "complete"), timeout=20_000)
    done = messages(app)[-1]
    assert done.id == cut.id and done.content.startswith("Half an answer")
    assert len(done.content) > len(cut.content)
    assert done.ran_on == office_node.base_url.split("//")[1].removesuffix("/v1")
    assert not window.error_banner.isVisible()


def test_plan_this_and_just_answer_override_the_mode_for_one_message(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    secrets.set_secret(secrets.OPENROUTER_KEY, API_KEY)
    with OpenRouterServer() as cloud:
        monkeypatch.setenv("SWITCHBOARD_OPENROUTER_URL", cloud.base_url)
        app = build_app(node_urls=[fault_server.base_url], monthly_budget_usd=5,
                        planner_model="stand-in/planner", planner_max_tokens=400,
                        mode="local only")
        window = app.main_window
        qtbot.keyClicks(window.composer, "What is the capital of France?")
        window.plan_this.trigger()
        qtbot.waitUntil(lambda: answered(app), timeout=10_000)
        assert len(cloud.chat_requests()) == 1  # planned in the cloud, though Local only
        assert messages(app)[-1].route == "cloud plan"

        window.mode.setCurrentText("Plan with cloud")
        qtbot.waitUntil(lambda: app.workspace.settings.mode == "plan with cloud")
        asked = len(messages(app))
        qtbot.keyClicks(window.composer, "And of Spain?")
        window.just_answer.trigger()
        qtbot.waitUntil(lambda: len(messages(app)) > asked and answered(app), timeout=10_000)
        assert len(cloud.chat_requests()) == 1  # not asked again
        assert messages(app)[-1].route == "local"

    record = CallRecord()
    calls = record.calls()
    record.close()
    plan, *carried_out, last = calls
    # The plan's cost as OpenRouter reported it, and its own tokens.
    assert (plan.tier, plan.workflow, plan.purpose, plan.tokens_counted) == (
        "cloud", "planned_task", "plan", False)
    planned_answer = next(m for m in messages(app) if m.route == "cloud plan" and m.kind == "")
    assert plan.cost_micro_usd > 0 and planned_answer.cost_micro_usd == plan.cost_micro_usd
    # Every call of the first message is recorded as the user's "Plan this"...
    assert {(c.override, c.reason) for c in [plan, *carried_out]} == {
        ("plan", "you asked to plan this")}
    assert sorted(c.purpose for c in carried_out) == ["assembly", "step", "step", "step"]
    # ...and the second's as "Just answer".
    assert (last.tier, last.override, last.reason) == (
        "office_node", "answer", "you asked to just answer")
    assert Override.PLAN.value == "plan"


def a_call(tier: str, workflow: str, tokens: int, day: int, *, cost: int = 0,
           baseline: int = 0, fallbacks: int = 0) -> Call:
    year, month = (int(part) for part in this_month().split("-"))
    return Call(at=datetime(year, month, day, 10, tzinfo=UTC), workflow=workflow,
                purpose="answer", route="local", reason="r", override="", tier=tier,
                node="n", model="m", prompt_tokens=tokens, completion_tokens=0,
                tokens_counted=False, cost_micro_usd=cost, baseline_micro_usd=baseline,
                first_token_ms=5, total_ms=10, fallbacks=fallbacks, fallback_from="",
                outcome="ok")


def test_the_usage_page_shows_what_the_month_came_to(qtbot: QtBot,
                                                    build_app: BuildApp) -> None:
    record = CallRecord()
    for call in (a_call("office_node", "chat", 9000, 1, baseline=40_000),
                 a_call("local_gpus", "summary", 3000, 1, baseline=20_000, fallbacks=1),
                 a_call("cloud", "planned_task", 1000, 1, cost=8_000, baseline=8_000),
                 a_call("office_node", "planned_task", 7000, 1, baseline=30_000)):
        record.add(call)
    record.close()
    app = build_app()
    app.main_window.usage_button.click()
    page = app.usage_window
    assert page is not None and page.isVisible()
    qtbot.waitUntil(lambda: page.figures["calls"].text() == "4", timeout=10_000)
    assert page.figures["local_share"].text() == "95% of tokens"  # 19,000 of 20,000
    assert page.figures["cloud"].text() == "$0.01"
    assert page.figures["baseline"].text() == "$0.10"
    assert page.figures["savings"].text() == "$0.09"
    assert page.figures["fallback"].text() == "25% of calls"
    # The first day's bar: office nodes at the bottom, then Local GPUs, then the cloud.
    bars = {tier.value: item.opts for tier, item in page.tier_bars.items()}
    assert (bars["office_node"]["height"][0], bars["local_gpus"]["height"][0],
            bars["cloud"]["height"][0]) == (16000, 3000, 1000)
    assert bars["cloud"]["y0"][0] == 19000
    assert list(page.spend_line.yData)[0] == pytest.approx(0.008)
    assert list(page.baseline_line.yData)[0] == pytest.approx(0.098)

    page.workflow.setCurrentText("Planned tasks")
    assert page.figures["calls"].text() == "2"
    assert page.figures["local_share"].text() == "88% of tokens"  # 7,000 of 8,000


def test_the_bubble_says_it_is_waiting_until_the_first_words(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer) -> None:
    from app.ui.chat_delegate import WAITING

    # The node takes the request and sends nothing yet.
    fault_server.set_scenario("stall_mid_stream", chunks=[], stall_s=30)
    app = build_app(node_urls=[fault_server.base_url])
    type_and_send(qtbot, app, "Hello")
    delegate = app.main_window.chat_view.chat_delegate
    qtbot.waitUntil(lambda: bool(messages(app)) and messages(app)[-1].role == "assistant",
                    timeout=10_000)
    assert delegate.status_text(messages(app)[-1]) == WAITING
    app.controller.stop()
    qtbot.waitUntil(lambda: last_answer_is(app, "cancelled"), timeout=10_000)
    assert WAITING not in delegate.status_text(messages(app)[-1])
