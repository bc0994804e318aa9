"""Rows of the fault matrix about what Switchboard keeps on disk: a disk that fills up
while it saves (a real one: a small tmpfs mounted as the Switchboard home), and each of
its files found damaged (the chat history, the settings, the budget ledger, the record of
calls, the summary cache) or IT's policy file broken. In each the user is told in words,
what was saved before is there afterwards (a damaged file is kept, never deleted), the
app goes on working, and no secret or document text is anywhere it shouldn't be."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core import budget, paths, secrets
from app.core.budget import Ledger
from app.core.errors import StorageFailed
from app.core.history import History
from app.core.routing.record import CallRecord
from app.core.settings import Settings
from app.core.workspace import Workspace
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.leaks import assert_nothing_leaked
from tests.fixtures.openrouter_server import API_KEY, OpenRouterServer
from tests.fixtures.policy_files import write_policy
from tests.reliability.conftest import (
    DOCUMENT_TEXT,
    NODE_TOKEN,
    app_env,
    document_pdf,
    switchboard,
)

ANSWER = "The agenda has three items."
# A request the router plans, and plans in the cloud when asked to.
PLANNED = "Plan the office move: book the vans, tell every team, and update the floor plan"
PAGE = 4096  # SQLite's page size


def told(result: subprocess.CompletedProcess[str], *, lines: int | None = None) -> str:
    """The last line a verb wrote on stderr, after checking that all it wrote there is
    its own words (no traceback), `lines` of them when given."""
    assert "Traceback" not in result.stderr, result.stderr
    said = [line.strip() for line in re.split(r"[\r\n]+", result.stderr) if line.strip()]
    assert said and all(line.startswith("switchboard: ") for line in said), result.stderr
    if lines is not None:
        assert len(said) == lines, result.stderr
    return said[-1]


def answered(result: subprocess.CompletedProcess[str], text: str = ANSWER) -> None:
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(text), result.stdout
    assert "Traceback" not in result.stderr, result.stderr


def damage_pages(path: Path) -> bytes:
    """Overwrite every page of a closed SQLite file but its first (the header and the
    schema) with garbage, as a failing disk or a bad copy does; returns what it left."""
    data = path.read_bytes()
    assert len(data) >= 2 * PAGE, f"{path} is too small to damage a page of it"
    damaged = data[:PAGE] + (b"garbage!" * (len(data) // 8))[: len(data) - PAGE]
    path.write_bytes(damaged)
    return damaged


def cut_in_half(path: Path) -> bytes:
    """A text file cut off half-way, as a copy interrupted or a disk that lost its end."""
    cut = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(cut)
    return cut


def kept_aside(path: Path, mark: str) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.{mark}-*"))


def log_text(home: Path) -> str:
    return (home / "logs" / "switchboard.log").read_text(encoding="utf-8")


def chats(history: History) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Every chat's title and its messages' (role, content, status)."""
    return [(chat.title, [(m.role, m.content, m.status) for m in history.messages(chat.id)])
            for chat in history.chats()]


def cache_rows() -> list[tuple[Any, ...]]:
    path = paths.data_dir() / "summaries" / "summaries.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        return sorted(db.execute("SELECT file_sha256, step, text FROM steps").fetchall())


def call_count() -> int:
    record = CallRecord()
    try:
        assert record.problems == []
        return len(record.calls())
    finally:
        record.close()


def chat_in_a_workspace() -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The tray app's way to save a chat, on the office node in the saved settings: a
    workspace sends a question and keeps the answer. Returns what the history holds."""
    secrets.set_secret(secrets.NODE_TOKEN, NODE_TOKEN)
    workspace = Workspace.open()

    async def main() -> None:
        try:
            chat = workspace.history.create_chat("Weekly meeting")
            await workspace.send(chat.id, "What is on the agenda?", lambda e: None)
        finally:
            await workspace.close()

    asyncio.run(main())
    history = History(paths.history_db())
    try:
        return chats(history)
    finally:
        history.close()


# ---------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(switchboard_home: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted as the Switchboard home: a disk that really fills up."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command here to make a small disk with")
    switchboard_home.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs",
                              str(switchboard_home)], capture_output=True, text=True,
                             timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"a small disk can't be mounted here (needs root): "
                    f"{mounted.stderr.strip()}")
    try:
        yield switchboard_home
    finally:
        if subprocess.run(["umount", str(switchboard_home)], timeout=30).returncode != 0:
            subprocess.run(["umount", "--lazy", str(switchboard_home)], timeout=30)


def fill(disk: Path) -> Path:
    """Fill `disk` to its last byte with a ballast file; returns the ballast."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        size = 1 << 20
        while size:
            try:
                f.write(bytes(size))
            except OSError as e:
                assert e.errno == 28, e  # ENOSPC; anything else is not what we made
                size //= 2
    with pytest.raises(OSError, match="No space left"):
        (disk / "probe").write_bytes(bytes(PAGE))
    return ballast


def test_a_full_disk_while_saving_keeps_what_was_saved_and_says_so(
        small_disk: Path, fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.set_scenario("ok", chunks=[ANSWER])
    # Work saved before the disk fills: settings, a chat, a summary (its parts cached and
    # its calls recorded), a cloud plan's charge in the budget ledger.
    Settings().changed(node_urls=[fault_server.base_url], max_tokens=64,
                       temperature=0.2).save()
    settings_before = paths.settings_file().read_bytes()
    history_before = chat_in_a_workspace()
    report = document_pdf(tmp_path, pages=2)
    answered(switchboard("summarize", str(report)), "*Sources: pp. 1\u20132*")
    with Ledger() as ledger:
        charge = ledger.reserve(2_000, 1_000_000, purpose="plan", model="stand-in/planner")
        ledger.settle(charge.id, 1_500)
        budget_before = ledger.month_summary()
    cached_before, calls_before = cache_rows(), call_count()
    assert cached_before and calls_before >= 2
    secrets.set_secret(secrets.NODE_TOKEN, NODE_TOKEN)
    workspace = Workspace.open()  # the tray app, open while the disk fills
    asked = len(fault_server.requests)

    async def ask_in_the_chat(question: str) -> None:
        [chat] = workspace.history.chats()
        await workspace.send(chat.id, question, lambda e: None)

    with asyncio.Runner() as tray_app:  # one event loop, as the app's core has
        ballast = fill(small_disk)

        # The command line: each verb says, in one line, that it could not save and that
        # nothing saved was lost; none answers half-saved.
        for verb in (("ask", "What comes next?"), ("summarize", str(report)), ("budget",)):
            result = switchboard(*verb)
            assert result.returncode == 2 and result.stdout == "", result
            line = told(result, lines=1)
            assert "could not save to disk" in line and "Free some disk space" in line, line
            assert "Nothing already saved was lost" in line
        assert len(fault_server.requests) == asked  # nothing asked that couldn't be kept
        # The tray app: saving settings, and a question in the chat, are refused in words.
        with pytest.raises(StorageFailed) as refused:
            Settings().changed(max_tokens=99).save()
        assert "No space left on device" in refused.value.user_text()
        assert "Free some disk space" in refused.value.user_text()
        with pytest.raises(StorageFailed) as refused:
            tray_app.run(ask_in_the_chat("And after that?"))
        assert "Free some disk space" in refused.value.user_text()

        ballast.unlink()

        # Everything saved before is there, as it was, and nothing half-written.
        assert paths.settings_file().read_bytes() == settings_before
        assert Settings.load() == (Settings().changed(node_urls=[fault_server.base_url],
                                                      max_tokens=64, temperature=0.2), [])
        assert sorted(p.name for p in paths.config_dir().iterdir()) == ["settings.json"]
        assert chats(workspace.history) == history_before
        assert cache_rows() == cached_before and call_count() == calls_before
        with Ledger() as ledger:
            assert ledger.month_summary() == budget_before
        # And the app works again: the open one, and a new process.
        try:
            tray_app.run(ask_in_the_chat("And after that?"))
        finally:
            tray_app.run(workspace.close())
    history = History(paths.history_db())
    [(_, messages)] = chats(history)
    history.close()
    assert messages == history_before[0][1] + [("user", "And after that?", "complete"),
                                               ("assistant", ANSWER, "complete")]
    answered(switchboard("ask", "What comes next?"))
    assert_nothing_leaked(small_disk, secrets=[NODE_TOKEN], document_text=[DOCUMENT_TEXT])


def test_doctor_on_a_full_disk_says_the_data_folder_is_full(
        small_disk: Path, fault_server: FaultServer) -> None:
    Settings().changed(node_urls=[fault_server.base_url]).save()
    ballast = fill(small_disk)
    result = switchboard("doctor", "--json")
    ballast.unlink()
    report = json.loads(result.stdout)
    assert report["office_node"]["reachable"]  # the node answers: only the disk is wrong
    assert result.returncode == 1 and report["data_dir"]["writable"] is False, report


# ---------------------------------------------------------------------------- damaged files


def test_a_damaged_chat_history_is_kept_aside_and_a_new_one_started(
        switchboard_home: Path, fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", chunks=[ANSWER])
    Settings().changed(node_urls=[fault_server.base_url], max_tokens=64).save()
    before = chat_in_a_workspace()
    assert before and before[0][1][-1] == ("assistant", ANSWER, "complete")
    damaged = damage_pages(paths.history_db())

    answered(switchboard("ask", "What comes next?"))

    [aside] = kept_aside(paths.history_db(), "damaged")
    assert aside.read_bytes() == damaged  # kept as found, for IT to recover
    assert re.fullmatch(r"history\.sqlite3\.damaged-\d{8}T\d{6}Z", aside.name)
    assert "chat history" in log_text(switchboard_home) and "is damaged" in log_text(
        switchboard_home)
    history = History(paths.history_db())  # a new, sound history: the app goes on
    assert history.problems == [] and history.chats() == []
    history.close()
    assert_nothing_leaked(switchboard_home, secrets=[NODE_TOKEN])


def test_a_damaged_settings_file_is_kept_aside_and_defaults_load(
        switchboard_home: Path, fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", chunks=[ANSWER])
    Settings().changed(node_urls=[fault_server.base_url], max_tokens=64,
                       temperature=0.2).save()
    damaged = cut_in_half(paths.settings_file())

    doctor = switchboard("doctor")
    assert doctor.returncode == 1 and "Traceback" not in doctor.stderr  # no node set up now
    [aside] = kept_aside(paths.settings_file(), "corrupt")
    assert (f"FAIL  settings: The settings file was damaged; it was kept as {aside.name} "
            "and default settings are in use.") in doctor.stdout.splitlines()
    assert "FAIL  office node: not set up" in doctor.stdout
    assert aside.read_bytes() == damaged  # the user's values, as far as they survived
    assert not paths.settings_file().exists()  # defaults are in use, nothing written yet
    answered(switchboard("ask", "What comes next?", "--node", fault_server.base_url))
    assert kept_aside(paths.settings_file(), "corrupt") == [aside]
    assert Settings.load() == (Settings(), [])  # the next start is clean
    assert_nothing_leaked(switchboard_home, secrets=[NODE_TOKEN])


@pytest.fixture
def cloud_planning(switchboard_home: Path, fault_server: FaultServer,
                   key_store: dict[str, str]) -> Iterator[tuple[OpenRouterServer, dict[str, str]]]:
    """Cloud planning set up for app processes: the stand-in OpenRouter, the user's key
    in the real key store, a budget and the mode that plans in the cloud. Yields the
    stand-in and the app's environment."""
    fault_server.set_scenario("ok", chunks=[ANSWER])
    with OpenRouterServer() as cloud:
        env = app_env(**key_store, SWITCHBOARD_OPENROUTER_URL=cloud.base_url)
        subprocess.run([sys.executable, "-c", "import keyring, sys; keyring.set_password("
                        "'Switchboard', 'openrouter-api-key', sys.stdin.read())"],
                       input=API_KEY, text=True, env=env, check=True, timeout=60)
        Settings().changed(node_urls=[fault_server.base_url], model="m",
                           planner_model="stand-in/planner", planner_max_tokens=400,
                           monthly_budget_usd=1.0, mode="plan with cloud").save()
        yield cloud, env


def test_a_damaged_budget_ledger_is_left_as_it_is_and_nothing_is_spent(
        switchboard_home: Path, cloud_planning: tuple[OpenRouterServer, dict[str, str]]
) -> None:
    cloud, env = cloud_planning
    answered(switchboard("ask", "--plan", "cloud", PLANNED, env=env))
    with Ledger() as ledger:
        spent = ledger.month_summary()
    assert spent.calls == 1 and spent.spent_micro_usd > 0  # a real charge to keep
    ledger_file = budget.default_path()
    damaged = damage_pages(ledger_file)

    shown = switchboard("budget", env=env)
    assert shown.returncode == 2 and shown.stdout == ""
    line = told(shown, lines=1)
    assert "budget is damaged" in line and "Ask IT to repair the budget file" in line
    planned = switchboard("ask", "--plan", "cloud", PLANNED, env=env)
    assert "budget is damaged" in planned.stderr and "Traceback" not in planned.stderr
    assert len(cloud.chat_requests()) == 1  # no cloud call without a ledger to charge it
    answered(switchboard("ask", "What comes next?", env=env))  # unplanned work goes on

    # Never moved aside or started again empty: that would hand back money spent.
    assert ledger_file.read_bytes() == damaged
    assert kept_aside(ledger_file, "damaged") == []
    assert_nothing_leaked(switchboard_home, secrets=[NODE_TOKEN, API_KEY], cloud=cloud)


def test_a_damaged_budget_ledger_plans_locally_as_it_says(
        switchboard_home: Path, cloud_planning: tuple[OpenRouterServer, dict[str, str]]
) -> None:
    cloud, env = cloud_planning
    ledger_file = budget.default_path()
    ledger_file.write_bytes(b"not a ledger " * 400)

    planned = switchboard("ask", "--plan", "cloud", PLANNED, env=env)

    assert cloud.chat_requests() == []
    assert "budget is damaged" in planned.stderr and "Traceback" not in planned.stderr
    answered(planned)


def test_a_damaged_record_of_calls_is_kept_aside_and_a_new_one_started(
        switchboard_home: Path, fault_server: FaultServer) -> None:
    fault_server.set_scenario("ok", chunks=[ANSWER])
    Settings().changed(node_urls=[fault_server.base_url], max_tokens=64).save()
    answered(switchboard("ask", "What comes next?"))
    assert call_count() == 1
    record_file = paths.data_dir() / "calls.sqlite3"
    damaged = damage_pages(record_file)

    report = switchboard("report", "--json")

    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    assert json.loads(report.stdout)["calls"] == 0  # the statistics start again
    [aside] = kept_aside(record_file, "damaged")
    assert aside.read_bytes() == damaged  # kept as found, for IT to recover
    assert "record of calls" in log_text(switchboard_home)
    answered(switchboard("ask", "What comes next?"))  # and the new record records
    assert call_count() == 1
    assert_nothing_leaked(switchboard_home, secrets=[NODE_TOKEN])


@pytest.mark.parametrize("store, verb", [("history.sqlite3", "ask"),
                                         ("calls.sqlite3", "report")],
                         ids=["history-ask", "record-report"])
def test_the_command_line_says_when_it_kept_a_damaged_file_aside(
        switchboard_home: Path, fault_server: FaultServer, store: str, verb: str) -> None:
    fault_server.set_scenario("ok", chunks=[ANSWER])
    Settings().changed(node_urls=[fault_server.base_url], max_tokens=64).save()
    answered(switchboard("ask", "What comes next?"))  # both stores exist and are sound
    damage_pages(paths.data_dir() / store)

    result = switchboard(*{"ask": ("ask", "What comes next?"), "report": ("report",)}[verb])

    assert result.returncode == 0
    [aside] = kept_aside(paths.data_dir() / store, "damaged")
    assert "damaged" in result.stderr and aside.name in result.stderr, result.stderr


def test_a_damaged_summary_cache_is_kept_aside_and_never_stops_a_summary(
        switchboard_home: Path, fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.set_scenario("ok", chunks=[ANSWER])
    Settings().changed(node_urls=[fault_server.base_url], max_tokens=64).save()
    report = document_pdf(tmp_path, pages=2)
    first = switchboard("summarize", str(report))
    answered(first, "*Sources: pp. 1\u20132*")
    assert cache_rows()
    asked = len(fault_server.requests)
    cache_file = paths.data_dir() / "summaries" / "summaries.sqlite3"
    damaged = damage_pages(cache_file)

    again = switchboard("summarize", str(report))

    assert again.returncode == 0 and again.stdout == first.stdout, again.stderr
    assert "Traceback" not in again.stderr
    # Each part was asked of the node again (none reused from the damaged cache) …
    assert len(fault_server.requests) == 2 * asked
    # … the damaged cache was kept aside as it was found, not deleted …
    [aside] = cache_file.parent.glob("summaries.sqlite3.damaged-*[0-9]Z")
    assert aside.read_bytes() == damaged
    assert "the summary cache was damaged; it was kept as" in log_text(switchboard_home)
    # … and a new one started: the next summary asks the node for no part (only the
    # one-token request that measures the text, where the node has no tokenizer).
    third = switchboard("summarize", str(report))
    assert third.stdout == first.stdout
    assert [r.json()["max_tokens"] for r in fault_server.requests[2 * asked:]
            if r.path.endswith("/chat/completions")] in ([], [1])
    assert_nothing_leaked(switchboard_home, secrets=[NODE_TOKEN], document_text=[DOCUMENT_TEXT])


def test_a_broken_policy_file_turns_cloud_planning_off(
        switchboard_home: Path, fault_server: FaultServer,
        cloud_planning: tuple[OpenRouterServer, dict[str, str]]) -> None:
    cloud, env = cloud_planning
    policy = write_policy({"version": 1, "office_node_urls": [fault_server.base_url],
                           "cloud_allowed": True, "budget_ceiling_usd": 0.5})
    doctor = json.loads(switchboard("doctor", "--json", env=env).stdout)
    assert doctor["policy"]["problems"] == []
    assert doctor["policy"]["in_force"]["office_node_urls"] == [fault_server.base_url]
    settings_before = paths.settings_file().read_bytes()
    broken = cut_in_half(policy)

    doctor_text = switchboard("doctor", env=env)
    doctor = json.loads(switchboard("doctor", "--json", env=env).stdout)
    planned = switchboard("ask", "--plan", "cloud", PLANNED, env=env)

    # IT's bounds are not lifted by a broken file: the cloud is off, the mode local only…
    [problem] = doctor["policy"]["problems"]
    assert f"policy file {policy} can't be read" in problem
    assert problem.endswith("cloud planning is off.")
    assert doctor["policy"]["in_force"]["cloud_allowed"] is False
    assert "mode" in doctor["policy"]["bounded_settings"]
    assert any("'local only' in place of 'plan with cloud'" in change
               for change in doctor["policy"]["changed_settings"])
    assert f"FAIL  policy: {policy} is not in force; cloud planning is off" \
        in doctor_text.stdout.splitlines()
    assert f"FAIL  policy: {problem}" in doctor_text.stdout.splitlines()
    # … and, as packaging/ADMIN.md says, the rest of it is not applied either.
    assert doctor["policy"]["in_force"]["office_node_urls"] == []
    # The request is still answered, planned on the office's hardware: not in the cloud.
    answered(planned)
    assert cloud.chat_requests() == []
    # IT's file and the user's own settings are left as they were, for when it is fixed.
    assert policy.read_bytes() == broken
    assert paths.settings_file().read_bytes() == settings_before
    assert_nothing_leaked(switchboard_home, secrets=[NODE_TOKEN, API_KEY], cloud=cloud)
