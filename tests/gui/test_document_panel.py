"""The document panel: a dropped PDF is listed with its type, pages and status, the status
following the reading ("reading…", "summarising part n of m", "combining the parts",
"ready"); each document being read has its own progress bar, its words fitting it; its
summary is shown and exported; a question about it is answered from its most relevant
pages, fenced as data, with page references asked for and the pages ending the answer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PySide6.QtWidgets import QFileDialog, QStyleOptionViewItem
from pytestqt.qtbot import QtBot

from app.core.chat import ChatEvent
from app.core.documents.chunking import format_page_list
from app.ui.application import SwitchboardApp
from app.ui.document_panel import PROGRESS, DocumentPanel, fitted
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


def bars(panel: DocumentPanel) -> dict[str, tuple[float, str]]:
    """The progress bar each row draws, by document name: (fraction, words)."""
    shown = {}
    for row in range(panel.list.count()):
        option = QStyleOptionViewItem()
        option.rect = panel.list.visualItemRect(panel.list.item(row))
        bar = panel.delegate.bar(option, panel.list.model().index(row, 0))
        if bar is not None:
            name = panel.list.item(row).text().split(" — ")[0]
            shown[name] = (bar.progress / bar.maximum, bar.text)
    return shown


def status_of(row_text: str) -> str:
    """The status a row ends with: "report.pdf — PDF, 12 pages, ready" → "ready"."""
    return row_text.split(" \u2014 ", 1)[1].rsplit(", ", 1)[-1]


def progress_words(panel: DocumentPanel) -> dict[str, str]:
    """The whole progress words of each row being read (the bar may show fewer)."""
    shown = {}
    for row in range(panel.list.count()):
        item = panel.list.item(row)
        if item.data(PROGRESS) is not None:
            shown[item.text().split(" \u2014 ")[0]] = item.data(PROGRESS)[1]
    return shown


@pytest.fixture
def summarised(qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer,
               tmp_path: Path) -> SwitchboardApp:
    """The app with a 4-page PDF dropped on the document panel and summarised."""
    app = build_app(node_urls=[fault_server.base_url])
    # Pages of about 600 tokens, so each is split into its own parts for questions.
    pdf = pdf_with_pages(tmp_path, pages=4, filler_lines=25)
    assert drop(app.main_window.document_panel, pdf)
    qtbot.waitUntil(lambda: last_answer_is(app, "complete"), timeout=30_000)
    qtbot.waitUntil(lambda: panel_shows(app, "ready") and not app.main_window.controller.busy,
                    timeout=10_000)
    return app


def test_a_dropped_pdf_is_listed_ready_with_its_pages(summarised: SwitchboardApp,
                                                     qtbot: QtBot) -> None:
    window = summarised.main_window
    assert window.document_panel.list.item(0).text() == "known.pdf — PDF, 4 pages, ready"
    assert bars(window.document_panel) == {}  # read: its progress bar is gone
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
    assert not window.asking_chip.isVisibleTo(window)  # the next question goes to the chat

    [request] = chat_requests(fault_server)[asked_before:]
    system, user = request
    # The answer ends with the pages of the parts it was given (it cites none itself).
    given = [int(n) for first, last in re.findall(r'<document pages="pp?\. (\d+)\D?(\d*)">',
                                                  user["content"])
             for n in range(int(first), int(last or first) + 1)]
    assert answer.content == f"Hello, world.\n\n({format_page_list(given)})"
    assert 3 in given
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


def test_two_documents_read_at_once_each_show_their_own_progress(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer, tmp_path: Path) -> None:
    """Two PDFs summarised at once in one chat, both through the real summarising path:
    each row has its own bar with its own parts and time left, and loses it when its
    summary is done."""
    fault_server.set_scenario("ok", delay_s=0.1)  # ~0.3 s a part: time to watch
    app = build_app(node_urls=[fault_server.base_url])
    window, panel = app.main_window, app.main_window.document_panel
    # Several parts each; different page counts tell their bars apart.
    first = pdf_with_pages(tmp_path, pages=8, filler_lines=25, name="first.pdf")
    second = pdf_with_pages(tmp_path, pages=6, filler_lines=25, name="second.pdf")
    seen: list[dict[str, tuple[float, str]]] = []
    full: list[dict[str, str]] = []
    heights: set[int] = set()  # of rows with a bar

    def look(_: ChatEvent) -> None:  # connected after the panel: sees what it shows
        seen.append(bars(panel))
        full.append(progress_words(panel))
        heights.update(panel.list.visualItemRect(panel.list.item(row)).height()
                       for row in range(panel.list.count())
                       if panel.list.item(row).text().split(" — ")[0] in seen[-1])

    app.controller.chatEvent.connect(look)
    assert drop(panel, first)
    qtbot.waitUntil(lambda: "first.pdf" in bars(panel) and window.chat_id is not None,
                    timeout=10_000)
    # The controller runs one answer at a time, so the second one is started on the
    # core loop directly, with the controller's own way of bringing events to the GUI.
    controller, chat_id = app.controller, window.chat_id
    assert chat_id is not None
    running = controller.bridge.run(controller.workspace.summarize_document(
        chat_id, second, controller.bridge.coalesced(controller.chatEvent.emit)))
    qtbot.waitUntil(lambda: panel.list.count() == 2 and all(
        "ready" in panel.list.item(row).text() for row in range(2)), timeout=60_000)
    assert running.result(timeout=10).status == "complete"

    both = [shown for shown in seen if set(shown) == {"first.pdf", "second.pdf"}]
    assert both, "the two documents never showed a bar at the same time"
    words = {name: [shown[name] for shown in full if name in shown]
             for name in ("first.pdf", "second.pdf")}
    totals = {name: {int(n) for w in words[name] for n in re.findall(r" of (\d+)", w)}
              for name in words}
    # Each counts its own parts, not the other's: eight pages make more than six.
    assert len(totals["first.pdf"]) == len(totals["second.pdf"]) == 1
    assert max(totals["first.pdf"]) > max(totals["second.pdf"])
    for name in words:
        assert words[name][0] == "Reading\u2026"
        assert any(w.startswith("Summarising part ") and w.endswith(" s left")
                   for w in words[name]), words[name]
        fractions = [shown[name][0] for shown in seen if name in shown]
        assert fractions == sorted(fractions) and 0 < max(fractions) <= 1
    assert bars(panel) == {}
    # A row with a bar is taller, to fit it; done, it is a plain row again.
    plain = panel.list.visualItemRect(panel.list.item(0)).height()
    assert heights and min(heights) >= plain + panel.delegate.BAR_HEIGHT


def test_a_rows_status_and_bar_follow_the_reading_and_fit_the_panel(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer, tmp_path: Path) -> None:
    """Twelve short pages are read in three parts of four pages: the row reads "reading…",
    then "summarising part n of 3", then "combining the parts", then "ready"; the bar says
    the same, never cut short, and the time left too where it has room."""
    fault_server.set_scenario("ok", delay_s=0.2)  # time to watch each part
    app = build_app(node_urls=[fault_server.base_url])
    panel = app.main_window.document_panel
    panel.setMaximumWidth(220)  # as narrow as the window first shows it
    statuses: list[str] = []
    shown: list[tuple[str, str]] = []  # (the progress words, the bar's text)

    def look(*_: object) -> None:
        if not panel.list.count():
            return
        status = status_of(panel.list.item(0).text())
        if not statuses or statuses[-1] != status:
            statuses.append(status)
        option = QStyleOptionViewItem()
        option.rect = panel.list.visualItemRect(panel.list.item(0))
        option.fontMetrics = panel.list.fontMetrics()
        bar = panel.delegate.bar(option, panel.list.model().index(0, 0))
        if bar is not None:
            assert option.fontMetrics.horizontalAdvance(bar.text) <= bar.rect.width()
            shown.append((panel.list.item(0).data(PROGRESS)[1], bar.text))

    panel.list.model().rowsInserted.connect(look)
    panel.list.model().dataChanged.connect(look)
    assert drop(panel, pdf_with_pages(tmp_path, pages=12))
    qtbot.waitUntil(lambda: panel_shows(app, "ready") and not app.main_window.controller.busy,
                    timeout=30_000)

    assert statuses == ["reading\u2026", "summarising part 1 of 3", "summarising part 2 of 3",
                        "summarising part 3 of 3", "combining the parts", "ready"]
    assert panel.list.item(0).text() == "known.pdf \u2014 PDF, 12 pages, ready"
    # The bar has room for the stage, if not for the time left: it is never cut short.
    assert shown and all(text in (words, words.split(" \u00b7 ")[0]) for words, text in shown)
    assert any(text != words for words, text in shown)  # here, no room for the time left
    assert panel.list.horizontalScrollBar().maximum() == 0  # nothing hides past the edge


def test_the_bar_shows_the_time_left_only_where_it_has_room() -> None:
    words = "Summarising part 2 of 3 \u00b7 about 40 s left"

    def shown(room: int) -> str:
        return fitted(words, room, lambda text: len(text) <= room,
                      lambda text, width: text[:width - 1] + "\u2026")

    assert shown(60) == words
    assert shown(30) == "Summarising part 2 of 3"
    assert shown(12) == "Summarising\u2026"  # narrower than any panel: cut, and shown so
