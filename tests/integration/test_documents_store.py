"""Documents dropped into a chat, their pages and state, persist with the chat; deleting
the chat deletes them; a summary recorded end to end against a stand-in office node."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.chat import ChatEvent, ChatService, DocumentChanged
from app.core.history import History
from app.core.llm.office_node import OfficeNode
from app.core.settings import Settings
from tests.fixtures.documents import marker, pdf_with_pages
from tests.fixtures.fault_server import FaultServer


@pytest.fixture
def opened() -> Iterator[list[History]]:
    """Histories a test opens, closed after it (a leaked connection holds 3 files)."""
    histories: list[History] = []
    yield histories
    for history in histories:
        history.close()
    # The summary cache's connection is left to the garbage collector: collected here,
    # not in a later test that counts open files.
    gc.collect()


def open_history(opened: list[History], path: Path) -> History:
    history = History(path)
    opened.append(history)
    return history


def test_documents_and_pages_survive_reopening(tmp_path: Path,
                                               opened: list[History]) -> None:
    db = tmp_path / "h.sqlite3"
    history = History(db)
    chat = history.create_chat()
    answer = history.add_message(chat.id, "assistant", "", status="streaming")
    doc = history.add_document(chat.id, "report.pdf", "/x/report.pdf",
                               summary_message_id=answer.id)
    assert doc.status == "reading" and doc.pages == 0
    saved = history.update_document(doc.id, kind="pdf", sha256="ab",
                                    pages=[(1, "one"), (2, "two")])
    assert (saved.kind, saved.pages, saved.sha256) == ("pdf", 2, "ab")
    history.update_document(doc.id, status="ready")
    history.close()

    again = open_history(opened, db)
    [kept] = again.documents(chat.id)
    assert (kept.name, kept.path, kept.kind, kept.pages, kept.status) == (
        "report.pdf", "/x/report.pdf", "pdf", 2, "ready")
    assert kept.summary_message_id == answer.id
    assert again.document_pages(doc.id) == [(1, "one"), (2, "two")]
    assert again.document(doc.id) == kept


def test_deleting_the_chat_deletes_its_documents_and_pages(tmp_path: Path,
                                                           opened: list[History]) -> None:
    history = open_history(opened, tmp_path / "h.sqlite3")
    chat, other = history.create_chat(), history.create_chat()
    doc = history.add_document(chat.id, "a.txt", "/a.txt")
    history.update_document(doc.id, pages=[(1, "text")])
    kept = history.add_document(other.id, "b.txt", "/b.txt")
    history.delete_chat(chat.id)
    assert history.documents(chat.id) == []
    assert history.document(doc.id) is None
    assert history.document_pages(doc.id) == []
    assert history.documents(other.id) == [kept]


def test_a_document_being_read_when_the_app_died_is_marked_cancelled(
        tmp_path: Path, opened: list[History]) -> None:
    db = tmp_path / "h.sqlite3"
    history = History(db)
    chat = history.create_chat()
    doc = history.add_document(chat.id, "a.txt", "/a.txt")
    history.close()
    [again] = open_history(opened, db).documents(chat.id)
    assert again.id == doc.id and again.status == "cancelled" and again.error


def test_a_summary_records_the_document_and_its_pages(
        tmp_path: Path, fault_server: FaultServer, opened: list[History]) -> None:
    history = open_history(opened, tmp_path / "h.sqlite3")
    chat = history.create_chat()
    node = OfficeNode(Settings().changed(node_urls=[fault_server.base_url]), token="t")
    events: list[ChatEvent] = []
    pdf = pdf_with_pages(tmp_path, pages=3)

    async def main() -> None:
        try:
            await ChatService(history).summarize_document(chat.id, pdf, node, events.append)
        finally:
            await node.aclose()

    asyncio.run(main())
    changes = [e.document for e in events if isinstance(e, DocumentChanged)]
    assert [d.status for d in changes] == ["reading", "reading", "ready"]
    [doc] = history.documents(chat.id)
    assert (doc.kind, doc.pages, doc.status) == ("pdf", 3, "ready")
    summary = history.messages(chat.id)[-1]
    assert doc.summary_message_id == summary.id and summary.status == "complete"
    pages = history.document_pages(doc.id)
    assert [n for n, _ in pages] == [1, 2, 3] and marker(2) in pages[1][1]


def test_a_refused_file_records_the_error(tmp_path: Path, fault_server: FaultServer,
                                          opened: list[History]) -> None:
    history = open_history(opened, tmp_path / "h.sqlite3")
    chat = history.create_chat()
    node = OfficeNode(Settings().changed(node_urls=[fault_server.base_url]), token="t")
    folder = tmp_path / "folder.pdf"
    folder.mkdir()

    async def main() -> None:
        try:
            await ChatService(history).summarize_document(chat.id, folder, node,
                                                          lambda e: None)
        finally:
            await node.aclose()

    asyncio.run(main())
    [doc] = history.documents(chat.id)
    assert doc.status == "error" and "folder" in doc.error
