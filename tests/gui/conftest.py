"""Building the whole tray app against a test home, and taking it down cleanly; or, for a
widget that needs only simple core calls, a synchronous bridge instead of the core thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from app.core.settings import Settings
from app.core.workspace import Workspace
from app.ui.application import SwitchboardApp
from app.ui.garbage import GuiThreadCollector
from tests.gui.sync_bridge import SyncBridge

BuildApp = Callable[..., SwitchboardApp]


@pytest.fixture(autouse=True)
def gui_thread_gc(qtbot: QtBot) -> Iterator[None]:
    """As in the app: cycles (some holding Qt objects) are collected on the GUI thread."""
    collector = GuiThreadCollector()
    collector.start()
    yield
    collector.stop()


@pytest.fixture
def build_app(qtbot: QtBot) -> Iterator[BuildApp]:
    """`build_app(node_urls=[...])` saves those settings, then builds and starts the app."""
    apps: list[SwitchboardApp] = []

    def build(**settings: Any) -> SwitchboardApp:
        if settings:
            Settings.load()[0].changed(**settings).save()
        app = SwitchboardApp(Workspace.open())
        apps.append(app)
        for widget in (app.main_window, app.quick_ask):
            qtbot.addWidget(widget)
        app.start()
        app.show_main()
        return app

    yield build
    for app in apps:
        app.shutdown()


@pytest.fixture
def sync_bridge(qtbot: QtBot) -> Iterator[SyncBridge]:
    """A bridge that does the work at once on the GUI thread (see tests/gui/sync_bridge.py)."""
    bridge = SyncBridge()
    yield bridge
    bridge.close()
