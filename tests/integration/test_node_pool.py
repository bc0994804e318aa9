"""A pool of office nodes on real llama.cpp `llama-server` processes: what each node takes
is discovered, requests go to the least busy node, a node killed mid-answer keeps the
partial answer and the work moves on, a stuck node is passed over, a restarted node
takes requests again, and a summary on a four-slot node runs four parts at once and
never overflows a slot. Every call is a row in the record of calls."""

from __future__ import annotations

import asyncio
import pathlib
import secrets as token_maker
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.core import secrets
from app.core.chat import ChatEvent, TextAppended
from app.core.history import Message
from app.core.llm.node_info import LLAMA_CPP, NodeLoad, discover, read_load
from app.core.llm.openai_client import OpenAIClient
from app.core.routing.record import Call
from app.core.settings import Settings
from app.core.workspace import Workspace
from tests.fixtures.documents import pdf_with_pages
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.llama_cpp_server import LlamaCppServer
from tests.fixtures.records import recorded_calls
from tests.fixtures.waiting import until

KEY = token_maker.token_urlsafe(16)  # the office's nodes share one token


@pytest.fixture
def nodes(request: pytest.FixtureRequest) -> Iterator[Callable[..., LlamaCppServer]]:
    """Start llama-server processes; all are stopped when the test ends."""
    started: list[LlamaCppServer] = []

    def start(model: pathlib.Path, **options: Any) -> LlamaCppServer:
        server = LlamaCppServer(model, api_key=KEY, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def workspace_for(*urls: str, **settings: Any) -> Workspace:
    secrets.set_secret(secrets.NODE_TOKEN, KEY)
    Settings().changed(node_urls=list(urls), **settings).save()
    return Workspace.open()


def name(server: LlamaCppServer | FaultServer) -> str:
    return f"127.0.0.1:{server.port}"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ask_once(workspace: Workspace, prompt: str = "Hello") -> Message:
    """Ask in a new chat, then close the workspace."""
    async def main() -> Message:
        chat = workspace.history.create_chat()
        try:
            return await workspace.send(chat.id, prompt, lambda e: None)
        finally:
            await workspace.close()

    return asyncio.run(main())


# ---------------------------------------------------------------- what a node takes


def test_discovery_reads_slots_context_and_load(nodes: Callable[..., LlamaCppServer],
                                                tiny_model_path: pathlib.Path) -> None:
    server = nodes(tiny_model_path, parallel=4, ctx=4096)

    async def main() -> tuple[Any, NodeLoad | None]:
        client = OpenAIClient(server.base_url, token=KEY)
        try:
            info = await discover(client)
            return info, await read_load(client, info)
        finally:
            await client.aclose()

    info, load = asyncio.run(main())
    assert info.engine == LLAMA_CPP and info.models == (server.model,)
    assert (info.context_tokens, info.slots) == (1024, 4)  # 4,096 over four slots
    assert info.load_from == "metrics"
    assert load == NodeLoad(running=0, waiting=0)


# ---------------------------------------------------------------- spreading the work


def test_requests_go_to_the_least_busy_node(nodes: Callable[..., LlamaCppServer],
                                            slow_model_path: pathlib.Path) -> None:
    a = nodes(slow_model_path, parallel=2, ctx=2048)
    b = nodes(slow_model_path, parallel=2, ctx=2048)
    workspace = workspace_for(a.base_url, b.base_url, max_tokens=600)
    answers: list[list[ChatEvent]] = [[], [], []]

    async def main() -> list[Message]:
        chats = [workspace.history.create_chat() for _ in answers]
        tasks = [asyncio.create_task(workspace.send(chat.id, f"Question {i}", events.append))
                 for i, (chat, events) in enumerate(zip(chats, answers, strict=True))]
        await until(lambda: all(any(isinstance(e, TextAppended) for e in events)
                                for events in answers), "all three answering")
        # Asked of the servers themselves while the three answers stream.
        busy = await asyncio.to_thread(lambda: (a.busy_slots(), b.busy_slots()))
        done = await asyncio.gather(*tasks)
        await workspace.close()
        assert busy == (2, 1)
        return done

    done = asyncio.run(main())
    assert [m.status for m in done] == ["complete"] * 3
    # Both idle: the first in the order set up; then the idle one; then a tie: the first.
    assert sorted(m.ran_on for m in done) == sorted([name(a), name(a), name(b)])
    calls = recorded_calls()
    assert [c.node for c in sorted(calls, key=lambda c: c.at)] == [name(a), name(b), name(a)]
    for call in calls:
        assert (call.tier, call.workflow, call.outcome) == ("office_node", "chat", "ok")
        assert call.completion_tokens == 600 and not call.tokens_counted  # the server's usage
        assert call.cost_micro_usd == 0 and call.baseline_micro_usd > 0


# ---------------------------------------------------------------- when a node fails


def test_a_node_killed_mid_answer_keeps_the_partial_and_the_work_moves_on(
        nodes: Callable[..., LlamaCppServer], slow_model_path: pathlib.Path) -> None:
    a = nodes(slow_model_path, parallel=1, ctx=2048)
    b = nodes(slow_model_path, parallel=1, ctx=2048)
    workspace = workspace_for(a.base_url, b.base_url, max_tokens=800)
    first: list[ChatEvent] = []
    more: list[ChatEvent] = []
    after: list[ChatEvent] = []

    async def main() -> tuple[Message, Message, Message]:
        chat = workspace.history.create_chat()
        task = asyncio.create_task(workspace.send(chat.id, "Write a long answer", first.append))
        await until(lambda: sum(isinstance(e, TextAppended) for e in first) >= 3,
                    "the answer has begun")
        await asyncio.to_thread(a.kill)
        cut = await task
        continued = await workspace.continue_answer(cut.id, more.append)
        again = await workspace.send(chat.id, "And another", after.append)
        await workspace.close()
        return cut, continued, again

    cut, continued, again = asyncio.run(main())
    assert cut.status == "interrupted" and cut.content  # what arrived is kept
    assert "broke while it was answering" in cut.error
    assert cut.ran_on == name(a)
    assert continued.status == "complete" and continued.ran_on == name(b)
    assert continued.content.startswith(cut.content) and len(continued.content) > len(
        cut.content)
    assert again.status == "complete" and again.ran_on == name(b)  # a is down: not asked
    outcomes = [(c.node, c.outcome, c.reason) for c in recorded_calls()]
    assert outcomes[0][:2] == (name(a), "cut off")
    assert outcomes[1] == (name(b), "ok", "continued on another node")
    assert outcomes[2][:2] == (name(b), "ok")


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="pauses a node with SIGSTOP (POSIX)")
def test_a_stuck_node_is_passed_over_and_counts_as_not_answering(
        nodes: Callable[..., LlamaCppServer], tiny_model_path: pathlib.Path) -> None:
    a = nodes(tiny_model_path)
    b = nodes(tiny_model_path)
    a.pause()  # takes connections, answers nothing
    workspace = workspace_for(a.base_url, b.base_url, max_tokens=16)
    events: list[ChatEvent] = []

    async def main() -> Any:
        chat = workspace.history.create_chat()
        answer = await workspace.send(chat.id, "Hello", events.append)
        health = (await workspace.backend()).snapshot()
        await workspace.close()
        return answer, health

    try:
        answer, health = asyncio.run(main())
    finally:
        a.resume()
    assert answer.status == "complete" and answer.ran_on == name(b)
    stuck, fine = health.nodes
    assert (stuck.name, stuck.answering, fine.answering) == (name(a), False, True)
    assert "can't be reached" in stuck.error
    assert health.ok and health.summary("Office nodes") == "Office nodes: 1 of 2 answering"


def test_a_failure_before_the_first_word_moves_to_the_next_node(
        nodes: Callable[..., LlamaCppServer], tiny_model_path: pathlib.Path,
        fault_server: FaultServer) -> None:
    fault_server.set_scenario("error_mid_stream", chunks=[], error_message="out of memory")
    b = nodes(tiny_model_path)
    workspace = workspace_for(fault_server.base_url, b.base_url, max_tokens=16)
    events: list[ChatEvent] = []

    async def main() -> Message:
        chat = workspace.history.create_chat()
        try:
            return await workspace.send(chat.id, "Hello", events.append)
        finally:
            await workspace.close()

    answer = asyncio.run(main())
    assert answer.status == "complete" and answer.ran_on == name(b) and answer.error == ""
    (call,) = recorded_calls()
    assert (call.node, call.fallbacks, call.fallback_from) == (name(b), 1,
                                                               name(fault_server))


def test_a_restarted_node_takes_requests_again(nodes: Callable[..., LlamaCppServer],
                                               tiny_model_path: pathlib.Path) -> None:
    a = nodes(tiny_model_path)
    b = nodes(tiny_model_path)
    workspace = workspace_for(a.base_url, b.base_url, max_tokens=16)

    async def main() -> tuple[list[bool], list[bool], Message]:
        pool = await workspace.backend()
        await asyncio.to_thread(a.kill)
        down = [n.answering for n in (await pool.health()).nodes]
        await asyncio.to_thread(a.start)  # the same port again
        up = [n.answering for n in (await pool.health()).nodes]
        chat = workspace.history.create_chat()
        answer = await workspace.send(chat.id, "Hello", lambda e: None)
        await workspace.close()
        return down, up, answer

    down, up, answer = asyncio.run(main())
    assert down == [False, True] and up == [True, True]
    assert answer.status == "complete" and answer.ran_on == name(a)


def test_with_no_node_answering_local_gpus_take_over_when_allowed(
        tiny_model_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_GPUS", "none")
    down = f"http://127.0.0.1:{closed_port()}/v1"
    workspace = workspace_for(down, local_fallback=True, model_path=str(tiny_model_path),
                              max_tokens=16)

    answer = ask_once(workspace)
    assert answer.status == "complete" and answer.ran_on == "Local GPUs"
    (call,) = recorded_calls()
    assert (call.tier, call.fallback_from) == ("local_gpus", down.split("//")[1][:-3])


def test_with_no_node_answering_and_no_fallback_the_answer_says_so() -> None:
    first, second = (f"http://127.0.0.1:{closed_port()}/v1" for _ in range(2))
    workspace = workspace_for(first, second)

    answer = ask_once(workspace)
    assert answer.status == "error"
    assert answer.error.startswith("No office node is answering.")
    assert all(url.split("//")[1][:-3] in answer.error for url in (first, second))
    assert recorded_calls() == []  # nothing was sent to any model


# ---------------------------------------------------------------- summaries


def test_a_summary_on_a_four_slot_node_runs_four_parts_at_once(
        nodes: Callable[..., LlamaCppServer], slow_model_path: pathlib.Path,
        tmp_path: pathlib.Path) -> None:
    node = nodes(slow_model_path, parallel=4, ctx=4096)
    workspace = workspace_for(node.base_url)
    pdf = pdf_with_pages(tmp_path, pages=6, filler_lines=3)
    events: list[ChatEvent] = []
    most_busy = 0

    async def main() -> Message:
        nonlocal most_busy
        chat = workspace.history.create_chat()
        task = asyncio.create_task(workspace.summarize_document(chat.id, pdf, events.append))
        while not task.done() and most_busy < 4:
            most_busy = max(most_busy, await asyncio.to_thread(node.busy_slots))
        answer = await task
        await workspace.close()
        return answer

    answer = asyncio.run(main())
    assert answer.status == "complete", answer.error
    assert most_busy == 4  # the server itself had four parts in its slots at once
    calls = recorded_calls()
    assert len(calls) > 4 and all(c.outcome == "ok" for c in calls)
    assert {c.purpose for c in calls} == {"summary part", "combining pass"}
    for call in calls:  # the server's own counts: every request fit its 1,024-token slot
        assert not call.tokens_counted and call.tokens <= 1024


def test_a_hundred_page_summary_never_overflows_a_slot(
        nodes: Callable[..., LlamaCppServer], tiny_model_path: pathlib.Path,
        tmp_path: pathlib.Path) -> None:
    node = nodes(tiny_model_path, parallel=4, ctx=4096)
    workspace = workspace_for(node.base_url)
    pdf = pdf_with_pages(tmp_path, pages=100, filler_lines=3)

    async def main() -> tuple[Message, int]:
        parallel = (await workspace.capacity()).parallel
        chat = workspace.history.create_chat()
        answer = await workspace.summarize_document(chat.id, pdf, lambda e: None)
        await workspace.close()
        return answer, parallel

    answer, parallel = asyncio.run(main())
    assert answer.status == "complete", answer.error
    assert parallel == 4
    calls = recorded_calls()
    parts = [c for c in calls if c.purpose == "summary part"]
    assert len(parts) >= 100  # at least a part a page at this slot size
    for call in calls:
        assert call.outcome == "ok" and not call.tokens_counted and call.tokens <= 1024
    assert most_at_once(calls) <= 4


def most_at_once(calls: list[Call]) -> int:
    """The most calls that overlapped in time, from the record's own timings."""
    edges = sorted([(c.at.timestamp(), 1) for c in calls]
                   + [(c.at.timestamp() + c.total_ms / 1000, -1) for c in calls])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_its_name_for_a_node_and_its_running_cost_are_used(
        fault_server: FaultServer) -> None:
    from tests.fixtures.policy_files import write_policy

    write_policy({"office_node_urls": [{"url": fault_server.base_url, "name": "GPU room",
                                        "usd_per_million_tokens": 2.5}]})
    workspace = workspace_for()

    answer = ask_once(workspace)
    assert answer.ran_on == "GPU room"
    assert answer.cost_micro_usd == 23  # 9 tokens at $2.50 a million, rounded up
    (call,) = recorded_calls()
    assert (call.node, call.tokens, call.cost_micro_usd) == ("GPU room", 9, 23)


def test_saving_settings_mid_summary_lets_the_summary_finish(
        fault_server: FaultServer, tmp_path: pathlib.Path) -> None:
    fault_server.set_scenario("ok", chunks=["- a point [p. 1]"] * 20, delay_s=0.02)
    workspace = workspace_for(fault_server.base_url)
    pdf = pdf_with_pages(tmp_path, pages=3)
    events: list[ChatEvent] = []

    async def main() -> Message:
        chat = workspace.history.create_chat()
        task = asyncio.create_task(workspace.summarize_document(chat.id, pdf, events.append))
        await until(lambda: any(isinstance(e, TextAppended) for e in events)
                    or len(fault_server.requests) > 3, "the summary has begun")
        await workspace.apply_settings(workspace.settings.changed(temperature=0.3), None)
        try:
            return await task
        finally:
            await workspace.close()

    answer = asyncio.run(main())
    assert answer.status == "complete", answer.error
    assert "Summary of known.pdf" in answer.content


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="pauses a node with SIGSTOP (POSIX)")
def test_a_node_stuck_after_it_was_checked_is_passed_over_in_seconds(
        nodes: Callable[..., LlamaCppServer], tiny_model_path: pathlib.Path) -> None:
    a = nodes(tiny_model_path)
    b = nodes(tiny_model_path)
    workspace = workspace_for(a.base_url, b.base_url, max_tokens=16, first_byte_timeout_s=1)

    async def main() -> tuple[Message, Any]:
        pool = await workspace.backend()
        await pool.refresh()  # both answer now...
        a.pause()  # ...then a gets stuck: it takes connections and sends nothing
        chat = workspace.history.create_chat()
        try:
            answer = await workspace.send(chat.id, "Hello", lambda e: None)
            return answer, pool.snapshot()
        finally:
            a.resume()
            await workspace.close()

    answer, health = asyncio.run(main())
    assert answer.status == "complete" and answer.ran_on == name(b)
    assert not health.nodes[0].answering
    (call,) = recorded_calls()
    assert call.fallback_from == name(a)
