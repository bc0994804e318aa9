"""A document's reading as the chat reports it ("summarising part 1 of 3" … "combining the
parts"), and answers about a document ending with the pages they were answered from,
against a stand-in office node."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.chat import ChatEvent, ChatService, DocumentProgress, TextAppended
from app.core.documents.progress import stage_of
from app.core.documents.retrieve import EndsWithPages, top_chunks
from app.core.errors import SwitchboardError
from app.core.history import History
from app.core.llm.office_node import OfficeNode
from app.core.llm.openai_client import Delta, Finished, StreamEvent
from app.core.settings import Settings
from tests.fixtures.documents import marker, pdf_with_pages
from tests.fixtures.fault_server import FaultServer


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    opened = History(tmp_path / "h.sqlite3")
    yield opened
    opened.close()
    gc.collect()  # the summary cache's connection, before a later test counts open files


def node(server: FaultServer) -> OfficeNode:
    return OfficeNode(Settings().changed(node_urls=[server.base_url]), token="t")


def summarise(history: History, chat_id: int, pdf: Path, server: FaultServer,
              events: list[ChatEvent]) -> None:
    backend = node(server)

    async def main() -> None:
        try:
            await ChatService(history).summarize_document(chat_id, pdf, backend, events.append)
        finally:
            await backend.aclose()

    asyncio.run(main())


def test_the_progress_names_each_stage_of_a_summary(
        tmp_path: Path, fault_server: FaultServer, history: History) -> None:
    chat = history.create_chat()
    events: list[ChatEvent] = []
    summarise(history, chat.id, pdf_with_pages(tmp_path, pages=12), fault_server, events)
    progress = [e for e in events if isinstance(e, DocumentProgress)]
    stages = list(dict.fromkeys(stage_of(e.text) for e in progress))
    assert stages == ["summarising part 1 of 3", "summarising part 2 of 3",
                      "summarising part 3 of 3", "combining the parts"]
    assert all(len(e.text.split(" · ")[0]) <= 27 for e in progress)
    # The bar is full only once the parts are combined.
    fractions = [e.fraction for e in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [e.fraction for e in progress if e.text.startswith("Combining")][0] < 1.0


def test_an_answer_about_a_document_ends_with_the_pages_it_was_answered_from(
        tmp_path: Path, fault_server: FaultServer, history: History) -> None:
    chat = history.create_chat()
    summarise(history, chat.id, pdf_with_pages(tmp_path, pages=12), fault_server, [])
    [document] = history.documents(chat.id)
    fault_server.set_scenario("ok", chunks=["It says ", "what page seven says."])
    events: list[ChatEvent] = []
    backend = node(fault_server)

    async def main() -> None:
        try:
            await ChatService(history).ask_about_document(
                chat.id, document.id, f"What does {marker(7)} mean?", backend, events.append)
        finally:
            await backend.aclose()

    asyncio.run(main())
    answer = history.messages(chat.id)[-1]
    assert answer.status == "complete"
    # Parts hold two pages at most: the one that matches is pp. 7–8.
    assert answer.content == "It says what page seven says.\n\n(pp. 7\u20138)"
    streamed = "".join(e.text for e in events if isinstance(e, TextAppended))
    assert streamed == answer.content  # shown as it streams, as saved


def test_the_pages_come_last_in_the_stream_and_not_after_a_fault(
        fault_server: FaultServer) -> None:
    pages = [(n, f"This is page {n}. {marker(n)}") for n in range(1, 13)]
    hits = top_chunks(pages, f"Where is {marker(3)}? Is it {marker(4)}?")
    assert [h.pages for h in hits] == [(3, 4)]

    async def stream() -> list[StreamEvent]:
        backend = EndsWithPages(node(fault_server), hits)
        try:
            return [e async for e in backend.stream_chat([{"role": "user", "content": "?"}])]
        finally:
            await backend.aclose()

    fault_server.set_scenario("ok", chunks=["An answer [p. 4]\n"])
    *_, ending, finished = asyncio.run(stream())
    assert ending == Delta("\n(p. 4)")
    assert isinstance(finished, Finished) and finished.text == "An answer [p. 4]\n\n(p. 4)"

    fault_server.set_scenario("close_mid_stream", chunks=["An ans"])
    events: list[StreamEvent] = []

    async def cut_off() -> None:
        backend = EndsWithPages(node(fault_server), hits)
        try:
            async for event in backend.stream_chat([{"role": "user", "content": "?"}]):
                events.append(event)
        finally:
            await backend.aclose()

    with pytest.raises(SwitchboardError):
        asyncio.run(cut_off())
    assert "".join(e.text for e in events if isinstance(e, Delta)) == "An ans"
