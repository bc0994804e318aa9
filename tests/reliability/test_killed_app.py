"""Rows of the fault matrix: the app killed with SIGKILL while it streams an answer,
summarises a document, or holds a budget reservation for a cloud call. The app here is
the app's core in a process of its own, doing what the window asks of it (the same
`Workspace` calls), logging and armed for crash reports as the app is; the test kills it
at the moment that matters, then opens the same home as the next start would."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from app.core.budget import LEDGER_FILE, Ledger
from app.core.history import History, Message
from app.core.settings import Settings
from app.core.workspace import Workspace
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.leaks import assert_nothing_leaked, command_lines
from tests.fixtures.openrouter_server import API_KEY, OpenRouterServer
from tests.fixtures.waiting import wait_for
from tests.reliability.conftest import (
    DOCUMENT_TEXT,
    NODE_TOKEN,
    ROOT,
    app_env,
    document_pdf,
)

# SIGKILL, and what the killed process had running is read from /proc.
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL and /proc: Linux's")

# The app's core in a process: `send PROMPT` or `summarize FILE` in a new chat.
APP_CORE = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from app.core import crash, logs
    from app.core.workspace import Workspace

    crash.arm("app")
    logs.setup()
    verb, argument = sys.argv[1], sys.argv[2]

    async def main():
        workspace = Workspace.open()
        try:
            chat = workspace.history.create_chat()
            if verb == "send":
                await workspace.send(chat.id, argument, lambda event: None)
            else:
                await workspace.summarize_document(chat.id, Path(argument), lambda event: None)
        finally:
            await workspace.close()

    asyncio.run(main())
""")


def start_app_core(verb: str, argument: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", APP_CORE, verb, argument], cwd=ROOT,
                            env=app_env(**env))


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    """Read a live database with plain sqlite3 (opening a History would recover it)."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
        try:
            return con.execute(sql).fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []


def test_killed_while_streaming_keeps_the_partial_answer(
        switchboard_home: Path, fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", chunks=["word "] * 2000, delay_s=0.01)
    Settings().changed(node_urls=[fault_server.base_url], model="m").save()
    history_db = switchboard_home / "data" / "history.sqlite3"
    app = start_app_core("send", "Write the staff newsletter")
    try:
        wait_for(lambda: rows(history_db, "SELECT content FROM messages WHERE role='assistant' "
                                          "AND length(content) >= 50"), "the answer streams")
        argv = command_lines([app.pid])
        saved = rows(history_db, "SELECT content FROM messages WHERE role='assistant'")[0][0]
    finally:
        kill(app)

    history = History(history_db)  # the next start
    try:
        assert history.recovered == 1
        question, answer = history.messages(history.chats()[0].id)
        assert question.content == "Write the staff newsletter"
        assert answer.status == "interrupted" and "closed before" in answer.error
        assert isinstance(saved, str) and answer.content.startswith(saved[:50])
    finally:
        history.close()
    assert fault_server.requests[-1].headers["authorization"] == f"Bearer {NODE_TOKEN}"
    assert_nothing_leaked(switchboard_home, secrets=[NODE_TOKEN], argv=argv)


def test_killed_while_summarising_keeps_the_parts_done_and_the_next_summary_reuses_them(
        switchboard_home: Path, fault_server: FaultServer, tmp_path: Path) -> None:
    # Parts answer slowly, one at a time, so the kill lands between parts.
    fault_server.set_scenario("ok", chunks=["The budget ", "is agreed."], delay_s=0.2)
    Settings().changed(node_urls=[fault_server.base_url], model="m", max_tokens=64).save()
    document = document_pdf(tmp_path, pages=30, filler_lines=30)
    cache = switchboard_home / "data" / "summaries" / "summaries.sqlite3"
    app = start_app_core("summarize", str(document))
    try:
        wait_for(lambda: len(rows(cache, "SELECT step FROM steps")) >= 2, "two parts are done")
        argv = command_lines([app.pid])
    finally:
        kill(app)
    done_before = len(rows(cache, "SELECT step FROM steps"))
    asked_before = len(fault_server.requests)

    def parts_asked() -> list[str]:
        """The parts asked of the node since the kill (not its model list, nor the one-token
        request that measures a sample of the text)."""
        return [r.json()["messages"][-1]["content"][-80:]
                for r in fault_server.requests[asked_before:]
                if r.path.endswith("/chat/completions") and r.json().get("max_tokens") != 1]

    workspace = Workspace.open()  # the next start: the summary asked for again

    async def again() -> Message:
        try:
            chat = workspace.history.create_chat()
            return await workspace.summarize_document(chat.id, document, lambda e: None)
        finally:
            await workspace.close()

    fault_server.set_scenario("ok", chunks=["The budget ", "is agreed."])
    summary = asyncio.run(again())
    history = History(switchboard_home / "data" / "history.sqlite3")
    try:
        killed, finished = sorted(history.chats(), key=lambda c: c.id)
        [cut] = history.documents(killed.id)
        assert (cut.status, cut.name) == ("cancelled", document.name)
        assert "closed before" in cut.error
        assert history.messages(killed.id)[-1].status == "interrupted"
        assert [d.status for d in history.documents(finished.id)] == ["ready"]
    finally:
        history.close()
    parts = len(rows(cache, "SELECT step FROM steps"))
    assert summary.status == "complete" and "budget" in summary.content
    assert len(parts_asked()) == parts - done_before  # those done before were not asked again
    assert_nothing_leaked(switchboard_home, secrets=[NODE_TOKEN], document_text=[DOCUMENT_TEXT],
                          argv=argv)


def test_killed_while_holding_a_reservation_keeps_it_charged(
        switchboard_home: Path, fault_server: FaultServer,
        key_store: dict[str, str]) -> None:
    fault_server.set_scenario("ok", chunks=["Done."])
    with OpenRouterServer(latency_s=600) as cloud:  # the plan never comes: killed first
        env = {**key_store, "SWITCHBOARD_OPENROUTER_URL": cloud.base_url}
        subprocess.run([sys.executable, "-c", "import keyring, sys; keyring.set_password("
                        "'Switchboard', 'openrouter-api-key', sys.stdin.read())"],
                       input=API_KEY, text=True, env=app_env(**env), check=True, timeout=60)
        Settings().changed(node_urls=[fault_server.base_url], model="m",
                           planner_model="stand-in/planner", planner_max_tokens=400,
                           monthly_budget_usd=5, mode="plan with cloud").save()
        ledger_db = switchboard_home / "data" / LEDGER_FILE
        app = start_app_core("send", "Plan the office move: book vans, tell staff, "
                                     "and update the floor plan", **env)
        try:
            wait_for(lambda: cloud.chat_requests(), "the plan is asked for")
            argv = command_lines([app.pid])
            reserved = rows(ledger_db, "SELECT amount_micro_usd, state FROM reservations")
        finally:
            kill(app)
            cloud.stop()

    assert len(reserved) == 1 and reserved[0][1] == "open"
    ledger = Ledger(stale_after=timedelta(0))  # the next start, later
    try:
        month = ledger.month_summary(cap_micro_usd=5_000_000)
        # Still charged at its worst case, and flagged for reconciliation: never handed back.
        assert ledger.recovered == 1
        assert month.charged_micro_usd == reserved[0][0]
        assert month.remaining_micro_usd == 5_000_000 - int(str(reserved[0][0]))
    finally:
        ledger.close()
    history = History(switchboard_home / "data" / "history.sqlite3")
    try:
        assert history.messages(history.chats()[0].id)[0].content.startswith("Plan the office")
    finally:
        history.close()
    assert cloud.chat_requests()[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert_nothing_leaked(switchboard_home, secrets=[NODE_TOKEN, API_KEY], cloud=cloud,
                          argv=argv)

