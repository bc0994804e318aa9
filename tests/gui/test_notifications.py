"""Notifications: long work finished while the user is away; the tier down, and back."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from app.core.errors import NodeUnreachable
from app.core.llm.backend import Health
from app.core.tier_status import Availability, tier_state
from app.ui.notifications import Notifier
from app.ui.tray import Tray
from tests.fixtures.fault_server import FaultServer
from tests.gui.conftest import BuildApp

NODE = "Office node · ai-node-1"
UP = tier_state(NODE, Health(ok=True))
DOWN = tier_state(NODE, Health(ok=False, error=NodeUnreachable()))


def notifier(shown: list[str], away: bool = True, long_work_s: float = 0.0) -> Notifier:
    made = Notifier(lambda _title, text: shown.append(text), lambda: away)
    made.long_work_s = long_work_s
    return made


def test_long_work_finished_while_away_is_notified(qtbot: QtBot) -> None:
    shown: list[str] = []
    away = notifier(shown)
    away.busy_changed(True)
    away.busy_changed(False, "summary")
    assert shown == ["Your summary is ready."]
    watching = notifier(shown, away=False)  # the window is active: they saw it
    watching.busy_changed(True)
    watching.busy_changed(False)
    short = notifier(shown, long_work_s=3600)  # done before anyone looked away
    short.busy_changed(True)
    short.busy_changed(False)
    assert shown == ["Your summary is ready."]


def test_the_tier_going_down_and_coming_back_is_notified_once_each(qtbot: QtBot) -> None:
    shown: list[str] = []
    watcher = notifier(shown)
    watcher.tier_changed(tier_state(NODE, None))  # checking at start: nothing to say
    watcher.tier_changed(UP)
    watcher.tier_changed(DOWN)
    watcher.tier_changed(DOWN)
    watcher.tier_changed(UP)
    assert shown == [f"{NodeUnreachable().title} Switchboard keeps checking.",
                     "Office node · ai-node-1 answers again."]


def test_a_node_that_stops_answering_is_notified_from_the_tray(
        qtbot: QtBot, build_app: BuildApp, fault_server: FaultServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[str] = []
    monkeypatch.setattr(Tray, "showMessage", lambda _self, _title, text, *_: shown.append(text))
    app = build_app(node_urls=[fault_server.base_url])
    qtbot.waitUntil(lambda: app.controller.tier.availability is Availability.READY,
                    timeout=10_000)
    fault_server.stop()
    app.controller.check_health()
    qtbot.waitUntil(lambda: app.controller.tier.down, timeout=10_000)
    assert any("keeps checking" in text for text in shown)
