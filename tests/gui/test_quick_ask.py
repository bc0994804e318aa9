"""Quick ask as a user drives it: the question stays above its answer, quick questions
continue one chat until New, Stop marks the answer, and with no office node set up it
says so once and offers Settings."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.chat import AnswerFinished
from app.core.errors import SwitchboardError
from app.core.history import Chat
from app.ui.application import SwitchboardApp
from app.ui.quick_ask import STOPPED, QuickAsk
from tests.fixtures.fault_server import FaultServer
from tests.gui.conftest import BuildApp


def open_quick_ask(app: SwitchboardApp) -> QuickAsk:
    app.tray.quickAskRequested.emit()  # as a click on the tray icon does
    assert app.quick_ask.isVisible()
    return app.quick_ask


def ask(qtbot: QtBot, quick: QuickAsk, question: str) -> None:
    qtbot.keyClicks(quick.composer, question)
    qtbot.keyClick(quick.composer, Qt.Key.Key_Return)


def finished(app: SwitchboardApp) -> list[AnswerFinished]:
    """The answers that end from now on, as they end."""
    ended: list[AnswerFinished] = []
    app.controller.chatEvent.connect(
        lambda e: ended.append(e) if isinstance(e, AnswerFinished) else None)
    return ended


def shown_and_idle(app: SwitchboardApp, ended: list[AnswerFinished], answers: int) -> bool:
    """`answers` answers have ended, the last shown in quick ask, and nothing runs (so
    the history, the core thread's, can be read)."""
    return len(ended) == answers and not app.controller.busy \
        and app.quick_ask.answer.toPlainText() == "Quick answer"


def test_the_question_stays_above_its_answer(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", chunks=["**Quick**", " answer"])
    app = build_app(node_urls=[fault_server.base_url])
    quick = open_quick_ask(app)
    ended = finished(app)
    qtbot.keyClicks(quick.composer, "What is  the")
    qtbot.keyClick(quick.composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    ask(qtbot, quick, "filing deadline?")
    qtbot.waitUntil(lambda: shown_and_idle(app, ended, 1), timeout=10_000)
    assert quick.composer.toPlainText() == ""  # ready for the next question
    assert quick.question.isVisible()
    assert quick.question.text() == "What is the filing deadline?"  # on one line
    assert quick.question.geometry().bottom() < quick.answer.geometry().top()


def test_quick_questions_continue_one_chat_until_new(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", chunks=["Quick", " answer"])
    app = build_app(node_urls=[fault_server.base_url])
    history = app.workspace.history
    made: list[Chat] = []
    app.controller.new_chat(made.append)  # a chat of the user's own, not to be continued
    qtbot.waitUntil(lambda: len(made) == 1)
    quick = open_quick_ask(app)
    ended = finished(app)
    ask(qtbot, quick, "First question")
    qtbot.waitUntil(lambda: shown_and_idle(app, ended, 1), timeout=10_000)
    ask(qtbot, quick, "Second question")
    qtbot.waitUntil(lambda: shown_and_idle(app, ended, 2), timeout=10_000)

    chats = history.chats()
    assert len(chats) == 2  # the user's chat and one for both quick questions
    quick_chat = next(c for c in chats if c.id == quick.chat_id)
    assert quick_chat.kind == "quick"
    assert quick_chat.title == "Quick questions"  # not renamed after its first question
    assert [(m.role, m.content) for m in history.messages(quick_chat.id)] == [
        ("user", "First question"), ("assistant", "Quick answer"),
        ("user", "Second question"), ("assistant", "Quick answer")]
    # The node saw the first question with the second: the same conversation.
    sent = [m["content"] for m in fault_server.requests[-1].json()["messages"]]
    assert "First question" in sent and sent[-1] == "Second question"
    qtbot.waitUntil(lambda: len(app.main_window.chat_list.titles()) == 2)  # as shown
    assert quick.question.text() == "Second question"

    quick.activateWindow()
    qtbot.waitUntil(quick.isActiveWindow)
    qtbot.keyClick(quick.composer, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert not quick.question.isVisible() and quick.answer.toPlainText() == ""
    assert len(history.chats()) == 2  # nothing is made until the next question
    ask(qtbot, quick, "Third question")
    qtbot.waitUntil(lambda: shown_and_idle(app, ended, 3), timeout=10_000)
    fresh = history.quick_chat()
    assert fresh.id == quick.chat_id and fresh.id != quick_chat.id
    assert [m.content for m in history.messages(fresh.id)] == ["Third question",
                                                                "Quick answer"]
    sent = [m["content"] for m in fault_server.requests[-1].json()["messages"]]
    assert "First question" not in sent  # a fresh conversation
    ask(qtbot, quick, "Fourth question")  # and quick ask continues the fresh one
    qtbot.waitUntil(lambda: shown_and_idle(app, ended, 4), timeout=10_000)
    assert len(history.messages(fresh.id)) == 4 and len(history.chats()) == 3


def test_stop_keeps_the_partial_answer_marked_stopped(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", chunks=["word "] * 500, delay_s=0.02)
    app = build_app(node_urls=[fault_server.base_url])
    quick = open_quick_ask(app)
    ask(qtbot, quick, "Talk for a long time")
    qtbot.waitUntil(lambda: quick.answer.toPlainText().count("word") > 3, timeout=10_000)
    qtbot.mouseClick(quick.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: quick.answer.toPlainText().endswith(STOPPED), timeout=10_000)
    qtbot.waitUntil(lambda: not app.controller.busy)
    partial = quick.answer.toPlainText().removesuffix(STOPPED).strip()
    assert partial.startswith("word word word") and partial.count("word") < 500
    assert quick.question.text() == "Talk for a long time"
    assert not quick.error_banner.isVisible()  # stopping is not a failure
    [answer] = [m for m in app.workspace.history.messages(quick.chat_id or 0)
                if m.role == "assistant"]
    assert answer.status == "cancelled" and answer.content.strip() == partial


def test_with_no_office_node_it_says_so_once_and_offers_settings(
        qtbot: QtBot, build_app: BuildApp, monkeypatch: pytest.MonkeyPatch) -> None:
    app = build_app()  # nothing set up
    quick = open_quick_ask(app)
    shown: list[SwitchboardError] = []
    show_error = quick.error_banner.show_error
    monkeypatch.setattr(quick.error_banner, "show_error",
                        lambda error: shown.append(error) or show_error(error))
    assert not quick.settings_button.isVisible()
    ask(qtbot, quick, "Is anyone there?")
    qtbot.waitUntil(quick.error_banner.isVisible, timeout=10_000)
    qtbot.waitUntil(lambda: not app.controller.busy)
    assert [type(e).__name__ for e in shown] == ["NotConfigured"]  # once, not twice
    assert quick.error_banner.text().count("No office node is set up") == 1
    assert "No office node" not in quick.answer.toPlainText()  # the banner says it, only
    assert quick.question.text() == "Is anyone there?"
    assert quick.settings_button.isVisible()
    with qtbot.waitSignal(quick.settingsRequested, timeout=1000):
        qtbot.mouseClick(quick.settings_button, Qt.MouseButton.LeftButton)
    assert not quick.isVisible()  # out of the way of the Settings dialog


def test_the_settings_button_is_only_for_a_missing_setup(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer) -> None:
    fault_server.set_scenario("status", status=500)
    app = build_app(node_urls=[fault_server.base_url])
    quick = open_quick_ask(app)
    ask(qtbot, quick, "Anyone?")
    qtbot.waitUntil(quick.error_banner.isVisible, timeout=10_000)
    assert "internal error" in quick.error_banner.text()
    assert not quick.settings_button.isVisible()


def test_the_shortcut_and_the_settings_button_are_wired_into_the_app(
        qtbot: QtBot, build_app: BuildApp) -> None:
    app = build_app()
    assert not app.quick_ask.isVisible()
    app.hotkey.activated.emit()  # as the desktop does when the shortcut is pressed
    qtbot.waitUntil(app.quick_ask.isVisible)
    app.quick_ask.settingsRequested.emit()
    qtbot.waitUntil(lambda: app.settings_dialog is not None
                    and app.settings_dialog.isVisible())
