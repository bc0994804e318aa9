"""The first-run guide against a real llama.cpp node: a bare host:port is tested and said
to work, a wrong address, a wrong token and a silent node are said not to in plain words
(with the window free meanwhile), a model file is checked for Local GPUs, finishing saves
the choice (the token only in the key store), and "Later" saves nothing.

The guide runs on the real Bridge and core loop, as in the app, so a test that waited on
the network on the GUI thread would show here."""

from __future__ import annotations

import json
import socket
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QPushButton
from pytestqt.qtbot import QtBot

from app.core import paths, secrets
from app.core.llm import node_info
from app.core.settings import RunOn, Settings
from app.core.setup_check import needs_setup
from app.core.workspace import Workspace
from app.ui.bridge import Bridge, CoreLoop
from app.ui.first_run import CHOOSE, DONE, NO_ADDRESS, NO_MODEL_FILE, TEST, FirstRunGuide
from tests.fixtures.llama_cpp_server import LlamaCppServer
from tests.fixtures.memory_keyring import MemoryKeyring, slow_to_save
from tests.gui.conftest import BuildApp

TESTED_S = 15_000  # ms: a test against the tiny node takes well under a second


@pytest.fixture
def guide(qtbot: QtBot) -> Iterator[FirstRunGuide]:
    """The guide over a fresh home, on the real core loop (closed with it at the end)."""
    core_loop = CoreLoop()
    workspace = Workspace.open()
    dialog = FirstRunGuide(Bridge(core_loop), workspace)
    qtbot.addWidget(dialog)
    dialog.show()
    yield dialog
    core_loop.stop(cleanup=workspace.close)


def click(qtbot: QtBot, button: QPushButton) -> None:
    assert button.isVisible() and button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def enter_node(qtbot: QtBot, guide: FirstRunGuide, address: str, token: str = "") -> None:
    """Type an office node's address (and token) and go on to the test."""
    qtbot.keyClicks(guide.node_urls, address)
    if token:
        qtbot.keyClicks(guide.token, token)
    click(qtbot, guide.next_button)


def outcome(qtbot: QtBot, guide: FirstRunGuide) -> str:
    """What the test said, once it has said it."""
    assert guide.pages.currentIndex() == TEST
    qtbot.waitUntil(lambda: guide.test_result.text().startswith(("✔", "✘")), timeout=TESTED_S)
    return guide.test_result.text()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def files_holding(secret: str) -> list[Path]:
    home = paths.config_dir().parent
    return [p for p in home.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_bare_address_of_a_real_node_is_said_to_work(
        qtbot: QtBot, guide: FirstRunGuide, llama_cpp_node: LlamaCppServer) -> None:
    enter_node(qtbot, guide, f"127.0.0.1:{llama_cpp_node.port}", llama_cpp_node.api_key)
    text = outcome(qtbot, guide)
    assert text.startswith("✔ It works: the office node answered")
    assert llama_cpp_node.model in text  # what the node serves, asked of the node itself
    assert guide.test_button.isEnabled() and guide.next_button.text() == "Save"


def test_a_wrong_address_is_said_not_to_work_in_plain_words(
        qtbot: QtBot, guide: FirstRunGuide) -> None:
    enter_node(qtbot, guide, f"127.0.0.1:{closed_port()}")
    text = outcome(qtbot, guide)
    assert text.startswith("✘ It doesn't work yet. The office node can't be reached.")
    assert "save it as it is" in text.lower()  # and what the user can do about it
    # Pressing Test again asks again, and says so again.
    click(qtbot, guide.test_button)
    assert guide.test_result.text() == "Testing…"
    assert outcome(qtbot, guide).startswith("✘ It doesn't work yet.")


def test_a_wrong_token_is_said_to_be_refused(
        qtbot: QtBot, guide: FirstRunGuide, llama_cpp_node: LlamaCppServer) -> None:
    enter_node(qtbot, guide, f"127.0.0.1:{llama_cpp_node.port}", "not-the-office-token")
    assert outcome(qtbot, guide).startswith(
        "✘ It doesn't work yet. The office node refused your access token.")


def test_a_silent_node_leaves_the_window_free_and_then_says_so(
        qtbot: QtBot, guide: FirstRunGuide, monkeypatch: pytest.MonkeyPatch) -> None:
    # Connections are taken by the kernel and never answered: a node that hangs.
    monkeypatch.setattr(node_info, "DISCOVERY_TIMEOUT_S", 1.0)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        enter_node(qtbot, guide, f"127.0.0.1:{silent.getsockname()[1]}")
        # The click has returned with the node still silent: the wait is not on this thread.
        assert guide.test_result.text() == "Testing…"
        assert not guide.test_button.isEnabled()
        text = outcome(qtbot, guide)
    assert text.startswith("✘ It doesn't work yet. The office node")


def test_what_is_not_an_address_or_a_file_stays_on_the_first_step(
        qtbot: QtBot, guide: FirstRunGuide) -> None:
    click(qtbot, guide.next_button)
    assert guide.pages.currentIndex() == CHOOSE and guide.choice_error.text() == NO_ADDRESS
    enter_node(qtbot, guide, "ftp://ai-node")
    assert guide.pages.currentIndex() == CHOOSE
    assert "not an http:// or https:// address" in guide.choice_error.text()
    guide.use_local.setChecked(True)
    assert not guide.node_urls.isVisible() and guide.model_path.isVisible()
    click(qtbot, guide.next_button)
    assert guide.pages.currentIndex() == CHOOSE and guide.choice_error.text() == NO_MODEL_FILE


def test_finishing_saves_the_address_and_keeps_the_token_in_the_key_store(
        qtbot: QtBot, guide: FirstRunGuide, llama_cpp_node: LlamaCppServer,
        memory_keyring: MemoryKeyring) -> None:
    assert needs_setup(Settings.load()[0])
    token = llama_cpp_node.api_key
    enter_node(qtbot, guide, f"127.0.0.1:{llama_cpp_node.port}", token)
    assert outcome(qtbot, guide).startswith("✔")
    with qtbot.waitSignal(guide.settingsSaved, timeout=TESTED_S):
        click(qtbot, guide.next_button)  # "Save"
    assert guide.pages.currentIndex() == DONE and not guide.later_button.isVisible()
    assert "ask from the Switchboard window, or from the tray icon" in guide.done_text.text()

    saved = json.loads(paths.settings_file().read_text())["settings"]
    assert saved["node_urls"] == [f"http://127.0.0.1:{llama_cpp_node.port}"]
    assert saved["backend"] == RunOn.OFFICE_NODE
    assert memory_keyring.store[(secrets.SERVICE, secrets.NODE_TOKEN)] == token
    assert files_holding(token) == []
    assert guide.workspace.settings.node_urls == (f"http://127.0.0.1:{llama_cpp_node.port}",)
    assert not needs_setup(Settings.load()[0])  # the next start goes straight to work
    with qtbot.waitSignal(guide.accepted):
        click(qtbot, guide.next_button)  # "Done"


def test_later_saves_nothing(qtbot: QtBot, guide: FirstRunGuide,
                             memory_keyring: MemoryKeyring,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Saving is handed to the core loop: asked for at all, it shows here at once, where the
    # files below could still be untouched because the save had not run yet.
    asked: list[tuple[Settings, str | None]] = []
    apply = guide.workspace.apply_settings

    def recorded(settings: Settings, token: str | None) -> Coroutine[Any, Any, None]:
        asked.append((settings, token))
        return apply(settings, token)

    monkeypatch.setattr(guide.workspace, "apply_settings", recorded)
    enter_node(qtbot, guide, f"127.0.0.1:{closed_port()}", "tok-typed-then-left")
    assert outcome(qtbot, guide).startswith("✘")
    with qtbot.assertNotEmitted(guide.settingsSaved), \
            qtbot.waitSignal(guide.finished) as closed:
        click(qtbot, guide.later_button)
    assert closed.args == [QDialog.DialogCode.Rejected.value]
    assert asked == []
    assert not paths.settings_file().exists()
    assert memory_keyring.store == {}
    assert guide.workspace.settings == Settings()
    assert files_holding("tok-typed-then-left") == []


def test_closing_while_it_saves_waits_for_the_save(
        qtbot: QtBot, guide: FirstRunGuide, memory_keyring: MemoryKeyring,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A key store that takes its time (one asking the user to unlock it, say).
    release = slow_to_save(memory_keyring, monkeypatch)
    enter_node(qtbot, guide, f"127.0.0.1:{closed_port()}", "tok-slow")
    outcome(qtbot, guide)
    click(qtbot, guide.next_button)  # "Save", though the node isn't answering today
    assert guide.saving and not guide.later_button.isEnabled()
    guide.reject()  # Escape, or the window's close button
    assert guide.isVisible()
    with qtbot.waitSignal(guide.settingsSaved, timeout=TESTED_S):
        release.set()
    assert memory_keyring.store[(secrets.SERVICE, secrets.NODE_TOKEN)] == "tok-slow"
    assert guide.pages.currentIndex() == DONE


def test_a_model_file_is_checked_and_saved_for_local_gpus(
        qtbot: QtBot, guide: FirstRunGuide, tiny_model_path: Path, tmp_path: Path,
        memory_keyring: MemoryKeyring) -> None:
    not_a_model = tmp_path / "notes.gguf"
    not_a_model.write_text("meeting notes, not a model")
    guide.use_local.setChecked(True)
    qtbot.keyClicks(guide.model_path, str(not_a_model))
    click(qtbot, guide.next_button)
    assert outcome(qtbot, guide).startswith(
        "✘ It doesn't work yet. That file can't be used as a model. "
        "(notes.gguf is not a GGUF file)")

    click(qtbot, guide.back_button)
    guide.model_path.setText(str(tiny_model_path))
    click(qtbot, guide.next_button)
    assert outcome(qtbot, guide).startswith("✔ It works:")
    with qtbot.waitSignal(guide.settingsSaved, timeout=TESTED_S):
        click(qtbot, guide.next_button)
    saved = json.loads(paths.settings_file().read_text())["settings"]
    assert (saved["backend"], saved["model_path"]) == (RunOn.LOCAL_GPUS, str(tiny_model_path))
    assert saved["node_urls"] == [] and memory_keyring.store == {}
    assert tiny_model_path.name in guide.done_text.text()


def test_the_app_opens_the_guide_only_while_nothing_is_set_up(
        qtbot: QtBot, build_app: BuildApp) -> None:
    fresh = build_app()
    assert fresh.first_run is not None
    qtbot.waitUntil(fresh.first_run.isVisible)
    with qtbot.waitSignal(fresh.first_run.finished):
        fresh.first_run.reject()  # Later
    qtbot.waitUntil(lambda: fresh.first_run is None)
    assert build_app(node_urls=["ai-node:8080"]).first_run is None
