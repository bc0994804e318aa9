"""Chatting on Local GPUs as a user does: the model loads with visible progress, answers
stream, a crash of the runtime leaves the window up with the partial answer kept, and the
next question works again. The real llama.cpp runtime runs on the CPU with the tiny model."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core.llm.local_gpus import LocalGPUs
from app.core.runtime.supervisor import State
from app.core.settings import Settings
from app.ui.application import SwitchboardApp
from app.ui.local_gpus_page import LocalGpusPage
from app.ui.tray import TrayState
from tests.gui.conftest import BuildApp
from tests.gui.sync_bridge import SyncBridge
from tests.gui.test_app import last_answer_is, messages, type_and_send


@pytest.fixture(autouse=True)
def no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_GPUS", "none")  # the same CPU plan on every machine


def runtime_of(app: SwitchboardApp) -> LocalGPUs:
    pool = app.workspace._pool
    assert pool is not None and isinstance(pool.local, LocalGPUs)
    return pool.local


def test_load_progress_then_an_answer_on_local_gpus(qtbot: QtBot, build_app: BuildApp,
                                                   tiny_model_path: Path) -> None:
    app = build_app(backend="local GPUs", model_path=str(tiny_model_path), max_tokens=32)
    seen: list[State] = []
    app.controller.runtimeChanged.connect(lambda status: seen.append(status.state))
    type_and_send(qtbot, app, "Hello there")
    qtbot.waitUntil(lambda: last_answer_is(app, "complete"), timeout=60_000)
    assert messages(app)[-1].content
    assert seen[0] is State.LOADING and State.READY in seen
    assert app.main_window.node_label.text() == "Local GPUs: ready"
    assert app.main_window.unload_button.isVisible()
    assert not app.main_window.runtime_progress.isVisible()

    pid = runtime_of(app).supervisor.pid  # type: ignore[union-attr]
    qtbot.mouseClick(app.main_window.unload_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: seen[-1] is State.STOPPED, timeout=10_000)
    assert "not loaded" in app.main_window.node_label.text()
    assert pid is not None
    if sys.platform == "linux":
        assert not Path(f"/proc/{pid}").exists()  # freed, and reaped


def test_a_runtime_crash_keeps_the_window_and_the_partial_answer_then_recovers(
        qtbot: QtBot, build_app: BuildApp, tiny_model_path: Path) -> None:
    # Long enough to kill it mid-answer; short enough that two fit the tiny model's context.
    app = build_app(backend="local GPUs", model_path=str(tiny_model_path), max_tokens=1500)
    seen: list[State] = []
    app.controller.runtimeChanged.connect(lambda status: seen.append(status.state))
    type_and_send(qtbot, app, "Tell me everything")
    qtbot.waitUntil(lambda: len(messages(app)) == 2 and len(messages(app)[-1].content) > 40,
                    timeout=60_000)
    pid = runtime_of(app).supervisor.pid  # type: ignore[union-attr]
    assert pid is not None
    # As a CUDA abort or the OOM killer would (SIGTERM is TerminateProcess on Windows).
    os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))

    qtbot.waitUntil(lambda: last_answer_is(app, "interrupted"), timeout=15_000)
    partial = messages(app)[-1]
    assert len(partial.content) > 40
    assert "stopped unexpectedly" in partial.error
    # Said once, in the answer's bubble; the status bar says the runtime is restarting.
    assert not app.main_window.error_banner.isVisible()
    assert app.main_window.isVisible()
    assert State.CRASHED in seen

    # The runtime restarts by itself; the next question is answered.
    qtbot.waitUntil(lambda: seen[-1] is State.READY, timeout=30_000)
    assert app.tray.state == TrayState.IDLE
    type_and_send(qtbot, app, "Are you back?")
    qtbot.waitUntil(lambda: len(messages(app)) == 4 and last_answer_is(app, "complete"),
                    timeout=60_000)
    assert runtime_of(app).supervisor.pid not in (None, pid)  # type: ignore[union-attr]


def test_settings_show_the_split_plan_before_anything_loads(
        qtbot: QtBot, build_app: BuildApp, tiny_model_path: Path) -> None:
    app = build_app()
    app.open_settings()
    dialog = app.settings_dialog
    assert dialog is not None
    dialog.backend.setCurrentIndex(1)
    assert dialog.local_page.isVisibleTo(dialog) and not dialog.node_box.isVisibleTo(dialog)
    dialog.local_page.model_path.setText(str(tiny_model_path))
    dialog.local_page.refresh_plan()
    qtbot.waitUntil(lambda: "on the processor" in dialog.local_page.plan.text(),
                    timeout=10_000)
    assert app.workspace._pool is None or app.workspace._pool.local is None


def plan_shown(page: LocalGpusPage) -> bool:
    return bool(page.details.text())  # "" until the plan has been worked out


def test_the_split_plan_in_words_with_the_details_behind_a_toggle(
        qtbot: QtBot, sync_bridge: SyncBridge, tiny_model_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_GPUS", "24564,12288")
    page = LocalGpusPage(sync_bridge, Settings().changed(model_path=str(tiny_model_path)))
    qtbot.addWidget(page)
    page.show()
    qtbot.waitExposed(page)
    qtbot.waitUntil(lambda: plan_shown(page))
    # The tiny model has two layers; llama.cpp's n_gpu_layers counts its output layer too.
    # Three layers in all: with a 2:1 split llama.cpp puts them all on the first GPU.
    assert page.plan.text().startswith("Both layers on one of your two GPUs, about ")
    assert "n_gpu_layers" not in page.plan.text()
    assert not page.details.isVisible()

    qtbot.mouseClick(page.details_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(page.details.isVisible)
    details = page.details.text()
    assert "switchboard-tiny" in details
    assert "layers on the GPUs: all 2 and the output layer (llama.cpp n_gpu_layers 3)" \
        in details
    assert details.count("\n0   ") == 1 and "\n1   " in details  # a line per GPU
    assert page.details_button.text() == "Hide details"
    # Not clipped: the label gets all the room its text needs.
    qtbot.waitUntil(lambda: page.details.width() >= page.details.sizeHint().width()
                    and page.details.height() >= page.details.sizeHint().height())

    qtbot.mouseClick(page.details_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.details.isVisible())
    assert page.details_button.text() == "Show details"


def test_the_split_plan_says_when_the_file_is_missing(
        qtbot: QtBot, sync_bridge: SyncBridge, tiny_model_path: Path) -> None:
    page = LocalGpusPage(sync_bridge, Settings().changed(model_path=str(tiny_model_path)))
    qtbot.addWidget(page)
    qtbot.waitUntil(lambda: plan_shown(page))
    page.model_path.setText(str(tiny_model_path.with_suffix(".txt")))
    page.refresh_plan()
    qtbot.waitUntil(lambda: "does not exist" in page.plan.text())
    assert page.details_button.isHidden() and page.details.isHidden()
