"""End to end: the real `switchboard` process on a real X screen with a system tray,
answering from the real llama.cpp server."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core import paths
from app.core.settings import Settings
from tests.fixtures.desktop import Desktop, desktop, wait_for
from tests.fixtures.llama_server import LlamaServer


def switchboard_command() -> list[str]:
    """The installed console script, as a user starts it."""
    script = Path(sys.executable).with_name("switchboard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "app"]


@pytest.fixture
def screen() -> Iterator[Desktop]:
    with desktop() as d:
        yield d


def answers(db: Path) -> list[tuple[str, str]]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        return con.execute("SELECT status, content FROM messages WHERE role='assistant'"
                           ).fetchall()


def test_tray_click_quick_ask_and_an_answer_from_the_office_node(
        screen: Desktop, office_node: LlamaServer, tmp_path: Path) -> None:
    Settings().changed(node_urls=[office_node.base_url], max_tokens=32).save()
    env = {**screen.env, "SWITCHBOARD_NODE_TOKEN": office_node.api_key}
    log = open(tmp_path / "switchboard.log", "w")  # noqa: SIM115 — closed below
    app = subprocess.Popen(switchboard_command(), env=env, stdout=log, stderr=log)
    try:
        x, y = wait_for(lambda: screen.tray_icon_centre("Switchboard"), 30,
                        "the Switchboard icon in the system tray")
        screen.click(x, y)
        [quick_ask] = wait_for(lambda: screen.visible_windows("Quick ask"), 10,
                               "the quick-ask window")
        screen.type_into(quick_ask, "Say hello")
        done = wait_for(lambda: [a for a in answers(paths.history_db()) if a[0] == "complete"],
                        60, "a complete answer in the chat history")
        assert done[0][1], "the answer is empty"
        screen.screenshot(tmp_path / "quick-ask.png")

        # A second launch brings the first one's window forward and exits 0.
        second = subprocess.run(switchboard_command(), env=env, timeout=30,
                                capture_output=True, text=True)
        assert second.returncode == 0, second.stderr
        wait_for(lambda: screen.visible_windows("^Switchboard$"), 10, "the main window")
        assert app.poll() is None, "the first instance must keep running"
    finally:
        app.send_signal(signal.SIGTERM)
        try:
            code = app.wait(15)
        finally:
            if app.poll() is None:
                app.send_signal(signal.SIGUSR1)  # its stacks go to the log, for the report
                time.sleep(1)
                app.kill()
                app.wait()
            log.close()
    assert code == 0, (tmp_path / "switchboard.log").read_text()
    # The run left a log, and the token is in no file Switchboard wrote.
    assert "starting" in (paths.log_dir() / "switchboard.log").read_text()
    home = paths.config_dir().parent
    for path in home.rglob("*"):
        if path.is_file():
            assert office_node.api_key.encode() not in path.read_bytes(), path


def test_a_stale_lock_from_a_crashed_instance_is_recovered(tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    crashed = subprocess.Popen(switchboard_command(), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    lock = paths.runtime_dir() / "switchboard.lock"
    wait_for(lambda: lock.exists(), 30, "the first instance's lock")
    crashed.kill()  # no chance to clean up: the lock and the socket stay behind
    crashed.wait()
    assert lock.exists()

    restarted = subprocess.Popen(switchboard_command(), env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: lock.read_text().split("\n")[0] == str(restarted.pid), 30,
                 "the new instance to take the lock over")
        assert restarted.poll() is None
        # And it answers a further launch as the running instance.
        third = subprocess.run(switchboard_command(), env=env, timeout=30)
        assert third.returncode == 0
        assert restarted.poll() is None
    finally:
        restarted.terminate()
        assert restarted.wait(15) == 0
