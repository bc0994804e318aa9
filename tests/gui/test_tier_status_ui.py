"""Honest status against a real llama.cpp server: a request that fails because the node
is gone marks it down at once, everywhere together; Send waits with the reason; when the
node is back, everything says so and Send returns."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from app.core import secrets
from app.core.tier_status import Availability
from app.ui.chat_controller import HEALTH_EVERY_MS
from app.ui.tray import TrayState
from tests.fixtures.llama_cpp_server import LlamaCppServer
from tests.gui.conftest import BuildApp
from tests.gui.test_app import last_answer_is, type_and_send


def test_the_node_going_and_coming_back_shows_everywhere_at_once(
        qtbot: QtBot, build_app: BuildApp, tiny_model_path: Path) -> None:
    node = LlamaCppServer(tiny_model_path).start()
    try:
        secrets.set_secret(secrets.NODE_TOKEN, node.api_key)
        app = build_app(node_urls=[node.base_url], max_tokens=16)
        window, controller = app.main_window, app.controller
        qtbot.waitUntil(lambda: controller.tier.availability is Availability.READY,
                        timeout=20_000)
        assert window.send_button.isEnabled() and not window.tier_banner.isVisible()

        node.stop()
        type_and_send(qtbot, app, "Are you there?")
        # Marked down by the failed request itself: the regular check is far off.
        assert HEALTH_EVERY_MS >= 30_000
        qtbot.waitUntil(lambda: controller.tier.down and last_answer_is(app, "error"),
                        timeout=20_000)
        assert window.node_label.text() == app.tray.status_action.text() \
            == controller.tier.line
        assert "can't be reached" in controller.tier.line
        qtbot.waitUntil(lambda: app.tray.state == TrayState.ERROR and not controller.busy)
        assert window.tier_banner.isVisible()
        assert not window.send_button.isEnabled()
        assert window.send_button.toolTip() == controller.tier.why_not

        node.start()  # the same address: checked again soon while down
        qtbot.waitUntil(lambda: controller.tier.availability is Availability.READY,
                        timeout=30_000)
        assert window.node_label.text() == app.tray.status_action.text()
        assert "connected" in window.node_label.text()
        assert not window.tier_banner.isVisible() and window.send_button.isEnabled()
        assert app.tray.state == TrayState.IDLE
        type_and_send(qtbot, app, "And now?")
        qtbot.waitUntil(lambda: last_answer_is(app, "complete"), timeout=30_000)
    finally:
        node.stop()


def test_an_answer_that_arrives_marks_the_tier_up(qtbot: QtBot, build_app: BuildApp) -> None:
    from app.core.chat import AnswerFinished
    from app.core.errors import NodeUnreachable
    from app.core.history import Message
    from app.core.llm.backend import Health

    app = build_app(node_urls=["http://127.0.0.1:9/v1"])
    controller = app.controller
    qtbot.waitUntil(lambda: controller.tier.down, timeout=20_000)
    # A request that got through (quick ask, a summary) says the node answers after all.
    answered = Message(1, 1, "assistant", "Hello", "complete")
    with qtbot.waitSignal(controller.tierChanged):
        controller._answer_ended(AnswerFinished(answered))
    assert controller.tier.availability is Availability.READY
    assert app.main_window.send_button.isEnabled()
    assert app.tray.state == TrayState.IDLE
    failed = AnswerFinished(answered, NodeUnreachable("refused"))
    with qtbot.waitSignal(controller.tierChanged):
        controller._answer_ended(failed)
    assert controller.tier.down and isinstance(controller.health, Health)
