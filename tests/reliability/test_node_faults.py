"""Rows of the fault matrix: the office node killed, stopped or restarted (a real
llama.cpp `llama-server`), a node answering garbage or closing the connection mid-stream
(the fault stand-in: no real server does that on demand), and the Local GPUs runtime
child killed mid-answer. In each the answer received so far is kept, the chat says what
happened in words, the next question is answered, and no secret is anywhere it
shouldn't be."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from app.core import secrets
from app.core.chat import ChatEvent, TextAppended
from app.core.history import Message
from app.core.settings import Settings
from app.core.workspace import Workspace
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.leaks import assert_nothing_leaked, command_lines, descendants
from tests.fixtures.llama_cpp_server import LlamaCppServer
from tests.fixtures.waiting import until
from tests.reliability.conftest import NODE_TOKEN


@pytest.fixture
def node(slow_model_path: pathlib.Path) -> Iterator[LlamaCppServer]:
    """A real llama-server slow enough to act on while it answers."""
    with LlamaCppServer(slow_model_path, api_key=NODE_TOKEN, parallel=1, ctx=2048) as server:
        yield server


def open_workspace(*urls: str, **settings: Any) -> Workspace:
    secrets.set_secret(secrets.NODE_TOKEN, NODE_TOKEN)
    Settings().changed(node_urls=list(urls), **settings).save()
    return Workspace.open()


def fault_mid_answer(workspace: Workspace, fault: Callable[[], Awaitable[None]],
                     recover: Callable[[], Awaitable[None]] | None = None
                     ) -> tuple[Message, Message]:
    """Ask; once the answer has begun, apply `fault` and let the answer end; `recover`;
    then ask again in the same chat. Returns the cut answer and the next one."""
    events: list[ChatEvent] = []

    async def main() -> tuple[Message, Message]:
        try:
            chat = workspace.history.create_chat()
            task = asyncio.create_task(workspace.send(chat.id, "Write the minutes", events.append))
            await until(lambda: sum(isinstance(e, TextAppended) for e in events) >= 3,
                        "the answer has begun")
            try:
                await fault()
                cut = await task
            finally:
                if recover is not None:
                    await recover()
            again = await workspace.send(chat.id, "Now a short summary", lambda e: None)
            return cut, again
        finally:
            await workspace.close()

    return asyncio.run(main())


def answers(workspace: Workspace, chat_id: int) -> list[Message]:
    return [m for m in workspace.history.messages(chat_id) if m.role == "assistant"]


def test_node_killed_mid_answer_then_restarted(switchboard_home: pathlib.Path,
                                               node: LlamaCppServer) -> None:
    workspace = open_workspace(node.base_url, max_tokens=800)

    async def kill() -> None:
        await asyncio.to_thread(node.kill)

    async def restart() -> None:
        await asyncio.to_thread(node.start)  # the same address again
        await (await workspace.backend()).refresh()

    cut, again = fault_mid_answer(workspace, kill, restart)
    assert cut.status == "interrupted" and cut.content  # what arrived is kept
    assert "broke while it was answering" in cut.error
    assert again.status == "complete" and again.content
    reopened = Workspace.open()  # the next start has both, as they were
    try:
        saved = answers(reopened, cut.chat_id)
        assert [(m.status, m.content) for m in saved] == [(cut.status, cut.content),
                                                          (again.status, again.content)]
    finally:
        asyncio.run(reopened.close())
    assert node.process is not None
    assert_nothing_leaked(switchboard_home, secrets=[NODE_TOKEN],
                          argv=command_lines([os.getpid()], but=[node.process.pid]))


@pytest.mark.skipif(sys.platform != "linux", reason="SIGSTOP, SIGKILL and /proc: Linux's")
def test_node_stopped_mid_answer(switchboard_home: pathlib.Path,
                                 node: LlamaCppServer) -> None:
    workspace = open_workspace(node.base_url, max_tokens=800, stall_timeout_s=2)

    async def stop() -> None:
        node.pause()  # SIGSTOP: the connection stays open, nothing more comes

    async def resume() -> None:
        node.resume()

    cut, again = fault_mid_answer(workspace, stop, resume)
    assert cut.status == "interrupted" and cut.content
    assert "stopped answering part-way through" in cut.error, cut.error
    assert again.status == "complete"
    assert_nothing_leaked(switchboard_home, secrets=[NODE_TOKEN])


@pytest.mark.parametrize("fault", ["malformed_sse", "close_mid_stream", "reset_mid_stream",
                                   "error_mid_stream"])
def test_node_answering_garbage_or_closing_mid_stream(switchboard_home: pathlib.Path,
                                                      fault_server: FaultServer,
                                                      fault: str) -> None:
    fault_server.set_scenario(fault, chunks=["The agenda ", "has three "])
    workspace = open_workspace(fault_server.base_url, model="m")

    async def main() -> tuple[Message, Message]:
        try:
            chat = workspace.history.create_chat()
            cut = await workspace.send(chat.id, "Draft the agenda", lambda e: None)
            fault_server.set_scenario("ok", chunks=["Fine."])
            again = await workspace.send(chat.id, "Again, please", lambda e: None)
            return cut, again
        finally:
            await workspace.close()

    cut, again = asyncio.run(main())
    assert (cut.status, cut.content) == ("interrupted", "The agenda has three ")
    assert cut.error and "Traceback" not in cut.error
    assert (again.status, again.content) == ("complete", "Fine.")
    assert fault_server.requests[-1].headers["authorization"] == f"Bearer {NODE_TOKEN}"
    assert_nothing_leaked(switchboard_home, secrets=[NODE_TOKEN])


@pytest.mark.skipif(sys.platform != "linux", reason="SIGSTOP, SIGKILL and /proc: Linux's")
def test_runtime_child_killed_mid_answer(switchboard_home: pathlib.Path,
                                         slow_model_path: pathlib.Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_GPUS", "none")  # the runtime on the CPU
    workspace = open_workspace(backend="local GPUs", model_path=str(slow_model_path),
                               max_tokens=800, local_ctx=2048)
    seen: dict[str, Any] = {}

    async def kill_the_runtime() -> None:
        [pid] = [p for p in descendants([os.getpid()]) if b"--serve-model" in
                 pathlib.Path(f"/proc/{p}/cmdline").read_bytes()]
        seen["argv"] = command_lines([pid])
        seen["token"] = _environ(pid)["SWITCHBOARD_RUNTIME_TOKEN"]
        os.kill(pid, signal.SIGKILL)

    cut, again = fault_mid_answer(workspace, kill_the_runtime)
    assert cut.status == "interrupted" and cut.content
    assert cut.error and "Traceback" not in cut.error
    assert again.status == "complete" and again.content  # the runtime came back
    assert_nothing_leaked(switchboard_home, secrets=[seen["token"]], argv=seen["argv"])


def _environ(pid: int) -> dict[str, str]:
    raw = pathlib.Path(f"/proc/{pid}/environ").read_bytes()
    return dict(part.decode().split("=", 1) for part in raw.split(b"\0") if b"=" in part)
