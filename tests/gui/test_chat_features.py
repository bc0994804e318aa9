"""What users of every peer client expect of a chat window: regenerate and edit a message
(earlier versions kept), search across chats, chats grouped by date, export a chat as
Markdown, and presets (saved instructions) per chat."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot

from app.core import secrets
from app.core.history import Chat
from app.core.settings import Settings
from app.ui.chat_list import ChatList, date_group
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.llama_server import LlamaServer
from tests.gui.conftest import BuildApp
from tests.gui.test_app import click_action, last_answer_is, messages, type_and_send


def test_regenerate_then_edit_and_resend_from_the_bubbles(
        qtbot: QtBot, build_app: BuildApp, office_node: LlamaServer) -> None:
    secrets.set_secret(secrets.NODE_TOKEN, office_node.api_key)
    app = build_app(node_urls=[office_node.base_url], max_tokens=16)
    window = app.main_window
    type_and_send(qtbot, app, "Draft a note")
    qtbot.waitUntil(lambda: last_answer_is(app, "complete") and not app.controller.busy,
                    timeout=60_000)
    first_prompt, first_answer = messages(app)

    click_action(qtbot, app, first_answer.id, "regenerate")
    qtbot.waitUntil(lambda: len(messages(app)) == 2 and messages(app)[1].id != first_answer.id
                    and last_answer_is(app, "complete") and not app.controller.busy,
                    timeout=60_000)
    again = messages(app)[1]
    assert messages(app)[0].content == "Draft a note"
    versions = app.workspace.history.versions(again.id)
    assert [m.id for m in versions] == [first_answer.id, again.id]

    click_action(qtbot, app, messages(app)[0].id, "edit")
    assert window.editing_chip.isVisible()
    assert window.composer.toPlainText() == "Draft a note"
    window.composer.selectAll()
    type_and_send(qtbot, app, "Draft a short note")
    qtbot.waitUntil(lambda: len(messages(app)) == 2
                    and messages(app)[0].content == "Draft a short note"
                    and last_answer_is(app, "complete") and not app.controller.busy,
                    timeout=60_000)
    assert not window.editing_chip.isVisible()
    prompts = app.workspace.history.versions(messages(app)[0].id)
    assert [m.content for m in prompts][-1] == "Draft a short note"
    assert first_prompt.id in [m.id for m in prompts]  # the original is kept, not deleted


def test_search_finds_words_in_any_chat_and_opens_the_message(
        qtbot: QtBot, build_app: BuildApp) -> None:
    app = build_app()
    history = app.workspace.history
    budget = history.create_chat("Budget")
    history.add_message(budget.id, "user", "What is the travel budget for Zürich?")
    found = history.add_message(budget.id, "assistant", "The Zurich budget is 600 CHF.")
    other = history.create_chat("Lunch")
    history.add_message(other.id, "user", "Where do we eat on Friday?")
    window = app.main_window
    window.reload_chats()
    qtbot.waitUntil(lambda: len(window.chat_list.titles()) == 2)

    window.focus_search()
    qtbot.keyClicks(window.chat_list.search_field, "zurich 600")
    items = window.chat_list.items
    qtbot.waitUntil(lambda: items.count() == 1 and "«600»" in items.item(0).text())
    assert items.item(0).text().startswith("Budget\n")
    qtbot.mouseClick(items.viewport(), Qt.MouseButton.LeftButton,
                     pos=items.visualItemRect(items.item(0)).center())
    view = window.chat_view
    # The chat opens at the message found, not at its end.
    qtbot.waitUntil(lambda: window.chat_id == budget.id
                    and view.chat_model.row_of(found.id) is not None
                    and view.currentIndex().row() == view.chat_model.row_of(found.id))

    window.chat_list.search_field.clear()
    qtbot.keyClicks(window.chat_list.search_field, "nothing-like-this")
    qtbot.waitUntil(lambda: window.chat_list.headings() == ["Nothing found for "
                                                             "“nothing-like-this”"])
    window.chat_list.search_field.clear()  # back to every chat
    assert window.chat_list.titles() == ["Lunch", "Budget"]


def test_chats_are_grouped_by_when_they_were_last_used(qtbot: QtBot) -> None:
    today = dt.date(2026, 12, 4)

    def at(days_ago: int) -> float:
        return time.mktime((today - dt.timedelta(days=days_ago)).timetuple()) + 3600

    assert [date_group(at(n), today) for n in (0, 1, 3, 6, 7, 40, 400)] == [
        "Today", "Yesterday", "Previous 7 days", "Previous 7 days", "November 2026",
        "October 2026", "October 2025"]
    assert date_group(at(0) - 3 * 86400, dt.date(2026, 12, 20)) == "Earlier this month"
    chats = ChatList(lambda query, done: done([]))
    qtbot.addWidget(chats)
    chats.set_chats([Chat(3, "Plan", at(0), at(0)), Chat(2, "Memo", at(1), at(1)),
                     Chat(1, "Old", at(40), at(40))], today=today)
    assert chats.headings() == ["Today", "Yesterday", "October 2026"]
    assert chats.titles() == ["Plan", "Memo", "Old"]
    # A heading is not a chat: it can't be chosen.
    assert not chats.items.item(0).flags()


def test_a_chat_exports_as_markdown_with_its_summaries(
        qtbot: QtBot, build_app: BuildApp, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = build_app()
    history = app.workspace.history
    chat = history.create_chat("Quarterly report")
    history.add_message(chat.id, "user", "Summarise q3.pdf")
    history.add_message(chat.id, "assistant", "**Summary of q3.pdf**\n\nSales rose.",
                        kind="summary")
    history.add_document(chat.id, "q3.pdf", "/tmp/q3.pdf")
    history.add_message(chat.id, "user", "And costs?")
    history.add_message(chat.id, "assistant", "", status="error")  # failed, nothing said
    target = tmp_path / "export.md"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(target), "Markdown (*.md)")))
    window = app.main_window
    window.reload_chats()
    qtbot.waitUntil(lambda: window.chat_list.titles() == ["Quarterly report"])
    window.open_chat(chat.id)
    window.export_chat()
    qtbot.waitUntil(target.exists)
    text = target.read_text(encoding="utf-8")
    assert text.startswith("# Quarterly report\n")
    assert "*Documents: q3.pdf*" in text
    assert "## You\n\nSummarise q3.pdf" in text
    assert "## Switchboard\n\n**Summary of q3.pdf**\n\nSales rose." in text
    assert text.index("Sales rose.") < text.index("And costs?")
    qtbot.waitUntil(lambda: "Chat saved to" in window.statusBar().currentMessage())


def test_a_preset_chosen_beside_the_composer_applies_to_that_chat_only(
        qtbot: QtBot, build_app: BuildApp) -> None:
    app = build_app()
    window = app.main_window
    picker = window.presets
    picker.manage()
    dialog = picker.dialog
    assert dialog is not None
    dialog.name.setText("Formal")
    dialog.prompt.setPlainText("Answer formally, in British English.")
    with qtbot.waitSignal(dialog.changed):
        dialog.save_button.click()
    qtbot.waitUntil(lambda: picker.findText("Formal") > 0)
    dialog.close()

    window.new_chat()
    qtbot.waitUntil(lambda: window.chat_id is not None and picker.isEnabled())
    first = window.chat_id
    with qtbot.waitSignal(picker.chosen):
        picker.setCurrentIndex(picker.findText("Formal"))
        picker.activated.emit(picker.findText("Formal"))
    chat = app.workspace.history.chat(first)
    assert chat is not None and chat.system_prompt == "Answer formally, in British English."

    window.new_chat()
    qtbot.waitUntil(lambda: window.chat_id not in (None, first))
    qtbot.waitUntil(lambda: picker.currentText() == "No instructions")
    window.open_chat(first)
    qtbot.waitUntil(lambda: picker.currentText() == "Formal")


def test_the_model_picker_offers_the_nodes_models_and_answers_with_the_one_chosen(
        qtbot: QtBot, build_app: BuildApp) -> None:
    # A gateway (vLLM, LiteLLM) can list several models; llama.cpp's server lists one.
    with FaultServer(models=["qwen-32b", "llama-70b"]) as gateway:
        gateway.set_scenario("ok", chunks=["Fine."])
        app = build_app(node_urls=[gateway.base_url])
        picker = app.main_window.model_box
        qtbot.waitUntil(lambda: picker.count() == 2 and picker.isVisible(), timeout=10_000)
        assert [picker.itemText(i) for i in range(2)] == ["llama-70b", "qwen-32b"]
        assert picker.currentText() == "qwen-32b"  # the node's first answers until one is chosen
        picker.setCurrentIndex(0)
        picker.activated.emit(0)
        qtbot.waitUntil(lambda: app.workspace.settings.model == "llama-70b")
        qtbot.waitUntil(lambda: app.controller.tier.can_send, timeout=10_000)
        type_and_send(qtbot, app, "Which model?")
        qtbot.waitUntil(lambda: last_answer_is(app, "complete"), timeout=10_000)
        asked = [r.json()["model"] for r in gateway.requests if r.path.endswith("/completions")]
        assert asked == ["llama-70b"]
    assert Settings.load()[0].model == "llama-70b"  # kept for the next start
