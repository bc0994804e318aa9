"""The tray app as a user drives it: ask, watch the answer stream, stop, see faults, and
find everything again after a restart."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog, QMessageBox
from pytestqt.qtbot import QtBot

from app.core import paths, secrets
from app.core.chat import AnswerFinished
from app.core.history import Message
from app.ui.application import SwitchboardApp
from app.ui.tray import TrayState
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.llama_server import LlamaServer
from tests.fixtures.memory_keyring import MemoryKeyring, slow_to_save
from tests.gui.conftest import BuildApp


def type_and_send(qtbot: QtBot, app: SwitchboardApp, prompt: str) -> None:
    composer = app.main_window.composer
    qtbot.keyClicks(composer, prompt)
    qtbot.keyClick(composer, Qt.Key.Key_Return)


def click_action(qtbot: QtBot, app: SwitchboardApp, message_id: int, action: str) -> None:
    """Click an action under a message's bubble ("regenerate", "edit", …), as a user."""
    view = app.main_window.chat_view
    row = view.chat_model.row_of(message_id)
    assert row is not None
    index = view.chat_model.index(row, 0)
    view.scrollTo(index)
    qtbot.waitUntil(lambda: action in view.chat_delegate.action_rects(index))
    where = view.chat_delegate.action_rects(index)[action].center()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=where)


def messages(app: SwitchboardApp) -> list[Message]:
    model = app.main_window.chat_view.chat_model
    return [model.message_at(row) for row in range(model.rowCount())]


def last_answer_is(app: SwitchboardApp, *statuses: str) -> bool:
    shown = messages(app)
    return len(shown) >= 2 and shown[-1].role == "assistant" and shown[-1].status in statuses


def test_an_answer_streams_from_the_office_node_and_is_there_after_a_restart(
        qtbot: QtBot, build_app: BuildApp, office_node: LlamaServer) -> None:
    secrets.set_secret(secrets.NODE_TOKEN, office_node.api_key)
    app = build_app(node_urls=[office_node.base_url], max_tokens=24)
    appended: list[str] = []
    app.controller.chatEvent.connect(lambda e: appended.append(type(e).__name__))
    type_and_send(qtbot, app, "Say hello")
    qtbot.waitUntil(lambda: app.main_window.composer.toPlainText() == "")  # sent, so cleared
    qtbot.waitUntil(lambda: last_answer_is(app, "complete"), timeout=60_000)
    question, answer = messages(app)
    assert (question.role, question.content) == ("user", "Say hello")
    assert answer.content
    assert "TextAppended" in appended  # it streamed, it did not arrive whole
    assert app.main_window.chat_list.titles() == ["Say hello"]  # titled by the prompt
    app.shutdown()

    again = build_app()
    qtbot.waitUntil(lambda: len(messages(again)) == 2, timeout=10_000)
    assert [(m.role, m.content, m.status) for m in messages(again)] == [
        ("user", "Say hello", "complete"), ("assistant", answer.content, "complete")]
    assert again.main_window.chat_list.titles() == ["Say hello"]
    assert messages(again)[-1].model == office_node.model  # which model answered is kept


def test_stop_cancels_the_answer_closes_the_stream_and_keeps_the_partial_answer(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", chunks=["word "] * 500, delay_s=0.02)
    app = build_app(node_urls=[fault_server.base_url])
    order: list[str] = []
    app.controller.chatEvent.connect(
        lambda e: order.append("finished") if isinstance(e, AnswerFinished) else None)
    app.controller.busyChanged.connect(lambda busy: order.append(f"busy={busy}"))
    type_and_send(qtbot, app, "Talk for a long time")
    qtbot.waitUntil(lambda: len(messages(app)) == 2 and messages(app)[-1].content.count("word") > 3)
    assert app.main_window.send_button.text() == "Stop"
    qtbot.mouseClick(app.main_window.send_button, Qt.MouseButton.LeftButton)
    # The node sees the app hang up mid-answer: had Stop only hidden the answer, the
    # stream would have run to its end and never show up here.
    qtbot.waitUntil(lambda: bool(fault_server.hung_up), timeout=10_000)
    qtbot.waitUntil(lambda: "finished" in order)
    assert last_answer_is(app, "cancelled")
    assert messages(app)[-1].content.startswith("word word word")
    assert messages(app)[-1].content.count("word") < 500
    qtbot.waitUntil(lambda: app.main_window.send_button.text() == "Send")
    # Not free for a new question until the stopped answer is saved.
    assert order == ["busy=True", "finished", "busy=False"]


def test_a_node_dropping_mid_answer_shows_the_error_and_keeps_the_partial_answer(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer) -> None:
    fault_server.set_scenario("close_mid_stream", chunks=["Half ", "an answer"])
    app = build_app(node_urls=[fault_server.base_url])
    type_and_send(qtbot, app, "Question")
    qtbot.waitUntil(lambda: last_answer_is(app, "interrupted"), timeout=10_000)
    assert messages(app)[-1].content == "Half an answer"
    # Said once, in the answer's own bubble, with what can be done there.
    answer = messages(app)[-1]
    assert "broke while it was answering" in answer.error
    assert "kept" in answer.error  # the hint says nothing was lost
    view = app.main_window.chat_view
    index = view.chat_model.index(view.chat_model.rowCount() - 1, 0)
    assert set(view.chat_delegate.action_rects(index)) == {"regenerate", "continue"}
    assert not app.main_window.error_banner.isVisible()
    # Broken off part-way: the node is asked at once whether it still answers (it does).
    with qtbot.waitSignal(app.controller.healthChanged, timeout=10_000) as checked:
        pass
    assert checked.args[0].ok and app.main_window.send_button.isEnabled()


def test_an_unreachable_node_shows_in_the_tray_and_status_bar(
        qtbot: QtBot, build_app: BuildApp) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = build_app(node_urls=[f"http://127.0.0.1:{port}/v1"])
    qtbot.waitUntil(lambda: app.tray.state == TrayState.ERROR, timeout=10_000)
    assert "can't be reached" in app.tray.status_action.text()
    assert "can't be reached" in app.main_window.node_label.text()
    assert app.tray.toolTip() == "Switchboard — office node unreachable"


def test_the_tray_shows_answering_while_streaming(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", chunks=["a"] * 30, delay_s=0.03)
    app = build_app(node_urls=[fault_server.base_url])
    qtbot.waitUntil(lambda: "connected" in app.tray.status_action.text(), timeout=10_000)
    type_and_send(qtbot, app, "Hi")
    qtbot.waitUntil(lambda: app.tray.state == TrayState.BUSY)
    qtbot.waitUntil(lambda: last_answer_is(app, "complete"), timeout=10_000)
    qtbot.waitUntil(lambda: app.tray.state == TrayState.IDLE)


def test_settings_round_trip_keeps_the_token_only_in_the_key_store(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer,
        memory_keyring: MemoryKeyring) -> None:
    app = build_app()
    app.open_settings()
    dialog = app.settings_dialog
    assert dialog is not None
    dialog.node_urls.setPlainText(fault_server.base_url)
    dialog.token.setText("tok-very-secret-123")
    dialog.numeric["max_tokens"].setValue(333)
    qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Connected" in dialog.test_result.text(), timeout=10_000)
    assert fault_server.requests[-1].headers["authorization"] == "Bearer tok-very-secret-123"
    assert dialog.model.currentText() == "stand-in-model"  # filled from the node's list
    with qtbot.waitSignal(dialog.accepted, timeout=5000):
        dialog.save()
    qtbot.waitUntil(lambda: app.settings_dialog is None)  # closed, and deleted

    saved = json.loads(paths.settings_file().read_text())["settings"]
    assert saved["node_urls"] == [fault_server.base_url] and saved["max_tokens"] == 333
    assert saved["model"] == "stand-in-model"
    assert memory_keyring.store[(secrets.SERVICE, secrets.NODE_TOKEN)] == "tok-very-secret-123"
    for path in paths.config_dir().parent.rglob("*"):
        if path.is_file():
            assert b"tok-very-secret-123" not in path.read_bytes(), path

    app.open_settings()
    again = app.settings_dialog
    assert again is not None
    assert again.node_urls.toPlainText() == fault_server.base_url
    assert again.numeric["max_tokens"].value() == 333
    assert again.token.text() == ""  # never shown back
    qtbot.waitUntil(lambda: "saved" in again.token.placeholderText())


def test_closing_settings_while_it_saves_waits_for_the_save(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer,
        memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    # A key store that takes its time (one asking the user to unlock it, say).
    release = slow_to_save(memory_keyring, monkeypatch)
    app = build_app()
    app.open_settings()
    dialog = app.settings_dialog
    assert dialog is not None
    qtbot.waitUntil(dialog.cloud_page.key.isEnabled)  # the key store has answered
    dialog.cloud_page.key.setText("sk-or-v1-" + "a" * 64)
    dialog.numeric["max_tokens"].setValue(444)
    dialog.save()
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)  # closed while the key is being kept
    assert dialog.isVisible()
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        release.set()
    qtbot.waitUntil(lambda: app.settings_dialog is None)
    assert json.loads(paths.settings_file().read_text())["settings"]["max_tokens"] == 444
    app.open_settings()  # a new dialog, showing what was saved
    assert app.settings_dialog is not None and app.settings_dialog is not dialog
    assert app.settings_dialog.numeric["max_tokens"].value() == 444


def test_settings_refuses_a_bad_address_with_a_clear_message(
        qtbot: QtBot, build_app: BuildApp) -> None:
    app = build_app()
    app.open_settings()
    dialog = app.settings_dialog
    assert dialog is not None
    dialog.node_urls.setPlainText("node.office.local:8080\nftp://node.office.local")
    dialog.save()
    assert dialog.isVisible()
    assert "'ftp://node.office.local' is not an http:// or https:// address" \
        in dialog.error.text()
    assert not paths.settings_file().exists()


def test_quick_ask_streams_and_continues_in_the_main_window(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", chunks=["**Quick**", " answer"])
    app = build_app(node_urls=[fault_server.base_url])
    app.tray.quickAskRequested.emit()
    quick = app.quick_ask
    assert quick.isVisible()
    qtbot.keyClicks(quick.composer, "Fast question")
    qtbot.keyClick(quick.composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: quick.answer.toPlainText() == "Quick answer", timeout=10_000)
    assert quick.continue_button.isEnabled()
    qtbot.mouseClick(quick.continue_button, Qt.MouseButton.LeftButton)
    assert not quick.isVisible() and app.main_window.isVisible()
    qtbot.waitUntil(lambda: len(messages(app)) == 2, timeout=5000)
    assert messages(app)[0].content == "Fast question"
    assert messages(app)[1].content == "**Quick** answer"


def test_shift_enter_is_a_new_line_and_enter_sends(qtbot: QtBot, build_app: BuildApp) -> None:
    app = build_app()
    composer = app.main_window.composer
    sent: list[str] = []
    composer.submitted.connect(sent.append)
    qtbot.keyClicks(composer, "line one")
    qtbot.keyClick(composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(composer, "line two")
    assert sent == []
    qtbot.keyClick(composer, Qt.Key.Key_Return)
    assert sent == ["line one\nline two"]


def test_new_rename_and_delete_chats(qtbot: QtBot, build_app: BuildApp,
                                     monkeypatch: object) -> None:
    app = build_app()
    window = app.main_window
    window.new_chat()
    window.new_chat()
    qtbot.waitUntil(lambda: len(window.chat_list.titles()) == 2)
    assert window.chat_list.headings() == ["Today"]
    window.chat_list.items.setCurrentRow(1)  # the newest chat, under "Today"
    monkeypatch.setattr(QInputDialog, "getText",  # type: ignore[attr-defined]
                        staticmethod(lambda *a, **k: ("Quarterly report", True)))
    window.rename_chat()
    qtbot.waitUntil(lambda: window.chat_list.titles()[0] == "Quarterly report")
    monkeypatch.setattr(QMessageBox, "question",  # type: ignore[attr-defined]
                        staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    window.delete_chat()
    qtbot.waitUntil(lambda: len(window.chat_list.titles()) == 1)
    assert window.chat_list.titles() == ["New chat"]
    assert len(app.workspace.history.chats()) == 1


def test_before_anything_is_set_up_send_waits_and_says_what_to_do(
        qtbot: QtBot, build_app: BuildApp) -> None:
    app = build_app()
    window = app.main_window
    qtbot.waitUntil(lambda: app.tray.status_action.text() == "Office node: not set up yet")
    assert app.tray.state == TrayState.IDLE  # nothing is broken, it just isn't set up
    assert window.node_label.text() == app.tray.status_action.text()  # one state, both
    qtbot.waitUntil(window.tier_banner.isVisible)
    assert "Open Settings" in window.tier_banner.text.text()
    assert not window.send_button.isEnabled()
    assert "Settings" in window.send_button.toolTip()
    type_and_send(qtbot, app, "Is anyone there?")
    # Kept in the composer, not sent into a chat that would hold only a failed answer.
    assert window.composer.toPlainText() == "Is anyone there?"
    assert window.statusBar().currentMessage() == app.controller.tier.why_not
    assert app.workspace.history.chats() == []
    with qtbot.waitSignal(window.settingsRequested, timeout=1000):
        window.tier_banner.settings_button.click()


def test_a_crash_last_time_is_offered_with_its_report(
        qtbot: QtBot, build_app: BuildApp, monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtGui import QDesktopServices
    from PySide6.QtWidgets import QPushButton

    # As a crashed process leaves it: its stacks, under a process number that is gone.
    left = paths.log_dir() / "crash-app-4194303.txt"
    left.write_text("Fatal Python error: Segmentation fault\n\nThread 0x1 (most recent "
                    "call first):\n  File \"app/ui/tray.py\", line 60 in _on_activated\n")
    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl",
                        lambda url: opened.append(url.toLocalFile()) or True)
    app = build_app()
    qtbot.waitUntil(lambda: app.crash_notice is not None and app.crash_notice.isVisible(),
                    timeout=10_000)
    notice = app.crash_notice
    assert notice is not None and "stopped unexpectedly last time" in notice.text()
    buttons = {b.text(): b for b in notice.findChildren(QPushButton)}
    buttons["Open the report"].click()
    (report,) = opened
    assert Path(report).parent == paths.log_dir() / "crashes"
    assert "Segmentation fault" in Path(report).read_text()
    assert not left.exists()
