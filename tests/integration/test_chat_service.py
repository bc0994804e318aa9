"""Sending a prompt saves the question and the answer as it streams; faults, Stop and a
killed process keep what was received."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from app.core.chat import AnswerFinished, ChatEvent, ChatService, MessageAdded, TextAppended
from app.core.history import History
from app.core.llm.office_node import OfficeNode
from app.core.llm.openai_client import Delta
from app.core.settings import Settings
from tests.fixtures.fault_server import FaultServer


def node_for(server: FaultServer, **settings: object) -> OfficeNode:
    return OfficeNode(Settings().changed(node_urls=[server.base_url], **settings), token="t")


def send(history: History, node: OfficeNode, prompt: str = "Hello?") -> list[ChatEvent]:
    events: list[ChatEvent] = []
    chat = history.create_chat()

    async def main() -> None:
        try:
            await ChatService(history).send(chat.id, prompt, node, events.append)
        finally:
            await node.aclose()

    asyncio.run(main())
    return events


def test_a_streamed_answer_is_saved_and_titles_the_chat(tmp_path: Path,
                                                        fault_server: FaultServer) -> None:
    history = History(tmp_path / "h.sqlite3")
    fault_server.set_scenario("ok", chunks=["Four", "."])
    events = send(history, node_for(fault_server), "What is two plus two?")
    assert [type(e) for e in events] == [MessageAdded, MessageAdded, TextAppended, TextAppended,
                                         AnswerFinished]
    finished = events[-1]
    assert isinstance(finished, AnswerFinished) and finished.error is None
    [chat] = history.chats()
    assert chat.title == "What is two plus two?"
    saved = history.messages(chat.id)
    assert [(m.role, m.content, m.status) for m in saved] == [
        ("user", "What is two plus two?", "complete"), ("assistant", "Four.", "complete")]
    sent = fault_server.requests[-1].json()
    assert sent["messages"] == [{"role": "user", "content": "What is two plus two?"}]
    assert sent["model"] == "stand-in-model"  # no model set: the node's first one


def test_a_dropped_connection_keeps_the_partial_answer_marked_interrupted(
        tmp_path: Path, fault_server: FaultServer) -> None:
    history = History(tmp_path / "h.sqlite3")
    fault_server.set_scenario("close_mid_stream", chunks=["Half ", "an answer"])
    events = send(history, node_for(fault_server))
    finished = events[-1]
    assert isinstance(finished, AnswerFinished)
    assert finished.message.status == "interrupted"
    assert finished.error is not None and "broke" in finished.error.title
    [chat] = history.chats()
    answer = history.messages(chat.id)[-1]
    assert (answer.content, answer.status) == ("Half an answer", "interrupted")
    assert "broke" in answer.error


def test_a_refused_request_saves_an_error_and_no_text(tmp_path: Path,
                                                      fault_server: FaultServer) -> None:
    history = History(tmp_path / "h.sqlite3")
    fault_server.set_scenario("status", status=401)
    events = send(history, node_for(fault_server, model="m"))
    finished = events[-1]
    assert isinstance(finished, AnswerFinished) and finished.message.status == "error"
    assert "token" in finished.message.error


def test_failed_answers_are_left_out_of_the_next_context(tmp_path: Path,
                                                         fault_server: FaultServer) -> None:
    history = History(tmp_path / "h.sqlite3")
    chat = history.create_chat()
    history.add_message(chat.id, "user", "first")
    history.add_message(chat.id, "assistant", "", status="error")
    assert ChatService(history).context(chat.id) == [{"role": "user", "content": "first"}]


def test_stop_keeps_the_partial_answer_as_cancelled(tmp_path: Path,
                                                    fault_server: FaultServer) -> None:
    history = History(tmp_path / "h.sqlite3")
    fault_server.set_scenario("ok", chunks=["word "] * 200, delay_s=0.02)
    node = node_for(fault_server, model="m")
    chat = history.create_chat()
    events: list[ChatEvent] = []

    async def main() -> None:
        task = asyncio.create_task(ChatService(history).send(chat.id, "go", node, events.append))
        while sum(isinstance(e, TextAppended) for e in events) < 5:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await node.aclose()
        # The node sees the client hang up; a stream left open would run to its end.
        while not fault_server.hung_up:
            await asyncio.sleep(0.01)

    asyncio.run(main())
    finished = events[-1]
    assert isinstance(finished, AnswerFinished) and finished.message.status == "cancelled"
    answer = history.messages(chat.id)[-1]
    assert answer.status == "cancelled" and answer.content.startswith("word word word")


KILLED_CLIENT = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from app.core.chat import ChatService
    from app.core.history import History
    from app.core.llm.office_node import OfficeNode
    from app.core.settings import Settings

    history = History(Path(sys.argv[1]))
    chat = history.create_chat()
    node = OfficeNode(Settings().changed(node_urls=[sys.argv[2]], model="m"), token="t")
    asyncio.run(ChatService(history).send(chat.id, "go", node, lambda e: None))
""")


def test_a_killed_process_leaves_its_partial_answer_marked_interrupted(
        tmp_path: Path, fault_server: FaultServer) -> None:
    db = tmp_path / "h.sqlite3"
    fault_server.set_scenario("ok", chunks=["word "] * 400, delay_s=0.01)
    child = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, str(db),
                              fault_server.base_url], cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 30
        saved = ""
        while time.monotonic() < deadline and len(saved) < 50:
            time.sleep(0.1)
            if db.exists():
                # Read with plain sqlite3: History() would "recover" the live answer.
                with contextlib.closing(sqlite3.connect(db)) as con:
                    row = con.execute("SELECT content FROM messages WHERE role='assistant'"
                                      ).fetchone()
                saved = row[0] if row else ""
        child.kill()  # SIGKILL; TerminateProcess on Windows
    finally:
        child.wait(10)
    assert len(saved) >= 50, "the answer was not saved while it streamed"
    history = History(db)
    assert history.recovered == 1
    answer = history.messages(history.chats()[0].id)[-1]
    assert answer.status == "interrupted"
    assert answer.content.startswith("word word") and len(answer.content) >= len(saved)


class BrokenBackend:
    """A backend failing with something no backend should raise: a bug, not a fault."""

    name = "Broken"

    def describe(self) -> str:
        return self.name

    async def health(self) -> object:
        raise NotImplementedError

    async def stream_chat(self, messages: object, **_kw: object):  # type: ignore[no-untyped-def]
        yield Delta("partial ")
        raise AttributeError("'str' object has no attribute 'get'")

    async def aclose(self) -> None:
        pass


def test_an_unexpected_failure_still_ends_the_answer_and_keeps_its_text(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3")
    chat = history.create_chat()
    events: list[ChatEvent] = []
    asyncio.run(ChatService(history).send(chat.id, "hi", BrokenBackend(),  # type: ignore[arg-type]
                                          events.append))
    finished = events[-1]
    assert isinstance(finished, AnswerFinished) and finished.message.status == "interrupted"
    answer = history.messages(chat.id)[-1]
    assert (answer.content, answer.status) == ("partial ", "interrupted")
    assert "AttributeError" in answer.error
