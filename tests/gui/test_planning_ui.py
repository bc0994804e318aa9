"""Choosing how work is planned, in the window: with "Plan with cloud" the plan from the
(stand-in) cloud appears in the chat before the local answer, and the choice is kept."""

from __future__ import annotations

import json

import pytest
from pytestqt.qtbot import QtBot

from app.core import paths, secrets
from app.core.chat import PLAN_PREFIX
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.openrouter_server import API_KEY, OpenRouterServer
from tests.gui.conftest import BuildApp
from tests.gui.test_app import last_answer_is, messages, type_and_send


def test_plan_with_cloud_shows_the_plan_then_the_local_answer(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    secrets.set_secret(secrets.OPENROUTER_KEY, API_KEY)
    with OpenRouterServer() as cloud:
        monkeypatch.setenv("SWITCHBOARD_OPENROUTER_URL", cloud.base_url)
        app = build_app(node_urls=[fault_server.base_url], monthly_budget_usd=5,
                        planner_model="stand-in/planner", planner_max_tokens=64)
        window = app.main_window
        assert window.mode.currentText() == "Auto"
        window.mode.setCurrentText("Plan with cloud")
        qtbot.waitUntil(lambda: app.workspace.settings.mode == "plan with cloud")
        saved = json.loads(paths.settings_file().read_text())["settings"]
        assert saved["mode"] == "plan with cloud"

        type_and_send(qtbot, app, "What's the capital of France?")
        qtbot.waitUntil(lambda: last_answer_is(app, "complete"), timeout=10_000)
        shown = messages(app)
        assert [m.role for m in shown] == ["user", "system", "assistant"]
        assert shown[1].content.startswith(PLAN_PREFIX) and "Step 1" in shown[1].content
        assert len(cloud.chat_requests()) == 1
        assert shown[2].content == "Hello, world."  # executed on the (stand-in) office node
