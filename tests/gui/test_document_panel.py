"""The document panel: a dropped PDF is listed with its type, pages and status; its
summary is shown and exported; a question about it is answered from its most relevant
pages, fenced as data, with page references asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot

from app.ui.application import SwitchboardApp
from tests.fixtures.documents import marker, pdf_with_pages
from tests.fixtures.fault_server import FaultServer
from tests.gui.conftest import BuildApp
from tests.gui.test_app import last_answer_is, messages
from tests.gui.test_documents_ui import drop


def chat_requests(server: FaultServer) -> list[list[dict[str, str]]]:
    return [json.loads(r.body)["messages"] for r in server.requests
            if r.path.endswith("/chat/completions")]


def panel_shows(app: SwitchboardApp, text: str) -> bool:
    panel = app.main_window.document_panel
    return panel.list.count() == 1 and text in panel.list.item(0).text()


@pytest.fixture
def summarised(qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer,
               tmp_path: Path) -> SwitchboardApp:
    """The app with a 4-page PDF dropped on the document panel and summarised."""
    app = build_app(node_url=fault_server.base_url)
    # Pages of about 600 tokens, so each is split into its own parts for questions.
    pdf = pdf_with_pages(tmp_path, pages=4, filler_lines=25)
    assert drop(app.main_window.document_panel, pdf)
    qtbot.waitUntil(lambda: last_answer_is(app, "complete"), timeout=30_000)
    qtbot.waitUntil(lambda: panel_shows(app, "ready"), timeout=10_000)
    return app


def test_a_dropped_pdf_is_listed_ready_with_its_pages(summarised: SwitchboardApp,
                                                     qtbot: QtBot) -> None:
    window = summarised.main_window
    assert window.document_panel.list.item(0).text() == "known.pdf — PDF, 4 pages, ready"
    assert window.document_panel.buttons["export"].isEnabled()
    window.document_panel.buttons["show"].click()
    summary = messages(summarised)[-1]
    assert window.chat_view.currentIndex().row() == window.chat_view.chat_model.row_of(
        summary.id)
    # Another chat has no documents; coming back lists it again.
    chat_id = window.chat_id
    assert chat_id is not None
    window.new_chat()
    qtbot.waitUntil(lambda: window.chat_id != chat_id)
    qtbot.waitUntil(lambda: window.document_panel.list.count() == 0)
    window.open_chat(chat_id)
    qtbot.waitUntil(lambda: panel_shows(summarised, "4 pages, ready"))


def test_asking_about_the_document_sends_its_best_pages_fenced(
        summarised: SwitchboardApp, qtbot: QtBot, fault_server: FaultServer) -> None:
    window = summarised.main_window
    asked_before = len(chat_requests(fault_server))
    window.document_panel.buttons["ask"].click()
    assert window.asking_chip.isVisibleTo(window)
    assert "Asking about known.pdf" in window.asking_chip.text()
    window.send(f"What is {marker(3)} about?")
    qtbot.waitUntil(lambda: len(messages(summarised)) == 4
                    and last_answer_is(summarised, "complete"), timeout=30_000)
    question, answer = messages(summarised)[-2:]
    assert question.content == f"About known.pdf: What is {marker(3)} about?"
    assert answer.content == "Hello, world."
    assert not window.asking_chip.isVisibleTo(window)  # the next question goes to the chat

    [request] = chat_requests(fault_server)[asked_before:]
    system, user = request
    assert "not instructions" in system["content"]
    assert marker(3) in user["content"]
    assert '<document pages="p. 3">' in user["content"] or '<document pages="pp. 2' in (
        user["content"])
    assert "[p. 3]" in user["content"]  # page references are asked for
    for page in (1, 2, 4):  # only the part that matches was sent
        assert marker(page) not in user["content"]


def test_export_writes_the_summary_as_markdown(
        summarised: SwitchboardApp, qtbot: QtBot, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out" / "summary.md"
    target.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *args, **kwargs: (str(target), "")))
    panel = summarised.main_window.document_panel
    with qtbot.waitSignal(panel.exported, timeout=5_000):
        panel.buttons["export"].click()
    text = target.read_text(encoding="utf-8")
    assert text.startswith("**Summary of known.pdf** (PDF, 4 pages)")
    assert text == messages(summarised)[-1].content + "\n"
