"""Dropping a document on the window: it is read and summarised on the local tier, with
progress and page references, and its text never reaches the cloud."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from app.core import secrets
from app.core.chat import DocumentProgress
from tests.fixtures.documents import marker, pdf_with_pages
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.llama_server import LlamaServer
from tests.fixtures.openrouter_server import API_KEY, OpenRouterServer
from tests.gui.conftest import BuildApp
from tests.gui.test_app import last_answer_is, messages


def drop(widget: QWidget, path: Path) -> bool:
    """Drag `path` over `widget` and drop it, as a file manager does."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    actions = Qt.DropAction.CopyAction
    enter = QDragEnterEvent(QPointF(20, 20), actions, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    event = QDropEvent(QPointF(20, 20), actions, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)
    return event.isAccepted()


def test_a_dropped_pdf_is_summarised_with_page_references(
        qtbot: QtBot, build_app: BuildApp, office_node: LlamaServer, tmp_path: Path) -> None:
    secrets.set_secret(secrets.NODE_TOKEN, office_node.api_key)
    app = build_app(node_urls=[office_node.base_url])
    progress: list[float] = []
    app.controller.chatEvent.connect(
        lambda e: progress.append(e.fraction) if isinstance(e, DocumentProgress) else None)
    pdf = pdf_with_pages(tmp_path, pages=3)
    assert drop(app.main_window, pdf)
    qtbot.waitUntil(lambda: last_answer_is(app, "complete"), timeout=60_000)
    request, summary = messages(app)
    assert request.content == "Summarise known.pdf"
    assert summary.content.startswith("**Summary of known.pdf** (PDF, 3 pages)")
    # The tiny model writes random text, so which pages it cites varies; they must be
    # real pages of this document, and there must be some.
    sources = summary.content.rsplit("*Sources: ", 1)[1]
    cited = {int(n) for n in re.findall(r"\d+", sources)}
    assert cited and cited <= {1, 2, 3}
    assert progress and progress[-1] == 1.0
    assert app.main_window.chat_list.titles() == ["Summarise known.pdf"]


def test_a_refused_file_says_why_and_nothing_is_sent(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer, tmp_path: Path) -> None:
    app = build_app(node_urls=[fault_server.base_url])
    folder = tmp_path / "a folder.pdf"
    folder.mkdir()
    assert drop(app.main_window, folder)
    qtbot.waitUntil(lambda: last_answer_is(app, "error"), timeout=10_000)
    assert "folder" in messages(app)[-1].error  # said once, in the answer's bubble
    panel = app.main_window.document_panel
    qtbot.waitUntil(lambda: panel.list.count() == 1
                    and panel.list.item(0).text().endswith("could not be read"))
    assert not app.main_window.error_banner.isVisible()
    # The background check may ask what the node serves; nothing of the file is sent.
    assert not [r for r in fault_server.requests if r.path.endswith("/chat/completions")]


def test_document_text_never_reaches_the_cloud(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    secrets.set_secret(secrets.OPENROUTER_KEY, API_KEY)
    with OpenRouterServer() as cloud:
        monkeypatch.setenv("SWITCHBOARD_OPENROUTER_URL", cloud.base_url)
        app = build_app(node_urls=[fault_server.base_url], mode="plan with cloud",
                        monthly_budget_usd=20, planner_model="stand-in/planner")
        pdf = pdf_with_pages(tmp_path, pages=4)
        assert drop(app.main_window, pdf)
        # Complete, and the summary's work done (sending meanwhile is refused as busy).
        qtbot.waitUntil(lambda: last_answer_is(app, "complete")
                        and not app.main_window.controller.busy, timeout=30_000)
        # A question in the same chat afterwards is planned in the cloud…
        app.main_window.send("What should I do first?")
        qtbot.waitUntil(lambda: len(messages(app)) >= 5 and last_answer_is(app, "complete"),
                        timeout=30_000)
        local = b"".join(r.body for r in fault_server.requests)
        assert marker(2).encode() in local  # the office node read the document
        sent_to_cloud = b"".join(r.body for r in cloud.requests)
        assert cloud.chat_requests()  # the cloud was asked to plan the question…
        for page in range(1, 5):  # …and never saw the document
            assert marker(page).encode() not in sent_to_cloud
        assert b"This is page" not in sent_to_cloud


def test_a_file_dropped_on_quick_ask_is_summarised_in_the_main_window(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer, tmp_path: Path) -> None:
    app = build_app(node_urls=[fault_server.base_url])
    app.main_window.hide()
    app.open_quick_ask()
    assert drop(app.quick_ask, pdf_with_pages(tmp_path, pages=2))
    assert not app.quick_ask.isVisible() and app.main_window.isVisible()
    qtbot.waitUntil(lambda: last_answer_is(app, "complete"), timeout=20_000)
    assert messages(app)[0].content == "Summarise known.pdf"
    assert marker(1).encode() in b"".join(r.body for r in fault_server.requests)


def test_a_file_from_the_tray_gets_a_chat_of_its_own(
        qtbot: QtBot, build_app: BuildApp, office_node: LlamaServer, tmp_path: Path) -> None:
    secrets.set_secret(secrets.NODE_TOKEN, office_node.api_key)
    app = build_app(node_urls=[office_node.base_url], max_tokens=16)
    history = app.workspace.history
    open_chat = history.create_chat("Lunch plans")
    history.add_message(open_chat.id, "user", "Where do we eat on Friday?")
    app.main_window.open_chat(open_chat.id)
    qtbot.waitUntil(lambda: len(messages(app)) == 1)
    app.summarize_file(pdf_with_pages(tmp_path, pages=2))  # as "Summarise a file…" does
    qtbot.waitUntil(lambda: last_answer_is(app, "complete") and not app.controller.busy,
                    timeout=60_000)
    assert app.main_window.chat_id != open_chat.id
    assert [m.content for m in history.messages(open_chat.id)] == [
        "Where do we eat on Friday?"]  # the chat open last is left as it was
    assert messages(app)[0].content == "Summarise known.pdf"
    qtbot.waitUntil(lambda: app.main_window.chat_list.titles()[0] == "Summarise known.pdf")
