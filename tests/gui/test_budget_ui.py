"""The cloud planning budget as a user sees it: the status bar's meter, the tray's line,
the 80% and 100% notifications, the budget page's chart, and the OpenRouter key pasted,
tested, saved only in the key store, and removed, from Settings."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import keyring
import keyring.backends.fail
import keyring.errors
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.core import paths, secrets
from app.core.budget import Ledger
from app.core.cloud_account import URL_ENV
from app.ui.application import SwitchboardApp
from app.ui.cloud_page import CloudPage, month_in_words
from app.ui.tray import TOOLTIPS, Tray, TrayState
from tests.fixtures.memory_keyring import MemoryKeyring
from tests.fixtures.openrouter_server import API_KEY, KeyState, OpenRouterServer
from tests.gui.conftest import BuildApp

USD = 1_000_000
CAP = 20 * USD


def charge(micro_usd: int, *, when: datetime | None = None) -> None:
    """A settled cloud call of `micro_usd` in the ledger the app reads."""
    with Ledger(clock=lambda: when or datetime.now(UTC)) as ledger:
        reservation = ledger.reserve(micro_usd, 10**12, purpose="plan", model="stand-in/planner")
        ledger.settle(reservation.id, micro_usd)


def refreshed(qtbot: QtBot, app: SwitchboardApp) -> None:
    with qtbot.waitSignal(app.controller.budgetChanged, timeout=5000):
        app.controller.refresh_budget()


def open_cloud_page(qtbot: QtBot, app: SwitchboardApp) -> CloudPage:
    app.open_settings()
    dialog = app.settings_dialog
    assert dialog is not None
    dialog.pages.setCurrentWidget(dialog.cloud_page)
    return dialog.cloud_page


@pytest.fixture
def notifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the tray showed as notifications.

    Patched on the class: undoing a patch of the instance would leave the tray holding a
    bound method of itself, a cycle that Python's collector may then break on a worker
    thread, deleting the Qt object there.
    """
    shown: list[str] = []
    monkeypatch.setattr(Tray, "showMessage", lambda _self, _title, text, *_: shown.append(text))
    return shown


def test_the_meter_and_the_tray_line_go_amber_at_80_and_red_at_100_percent_notifying_once(
        qtbot: QtBot, build_app: BuildApp, notifications: list[str]) -> None:
    charge(16 * USD)
    app = build_app(monthly_budget_usd=20)
    meter = app.main_window.budget_meter
    qtbot.waitUntil(lambda: meter.level == "amber", timeout=5000)
    assert meter.isVisible()
    assert meter.text() == "Cloud: $16.00 of $20.00"
    assert meter.value() == 800  # of 1000
    line = "Cloud planning: $16.00 of $20.00 this month"
    assert app.tray.budget_action.text() == line
    assert app.tray.budget_action.isVisible() and not app.tray.budget_action.isEnabled()
    assert app.tray.toolTip() == f"{TOOLTIPS[TrayState.IDLE]}\n{line}"
    assert len(notifications) == 1 and "80%" in notifications[0]

    refreshed(qtbot, app)  # the minute's re-read: no second notification at 80%
    assert len(notifications) == 1

    charge(4 * USD + 1)
    refreshed(qtbot, app)
    assert meter.level == "red"
    assert meter.text() == "Cloud: $20.00 of $20.00"
    assert meter.value() == 1000
    assert app.tray.budget_action.text() == "Cloud planning: $20.00 of $20.00 this month"
    assert len(notifications) == 2 and "used up" in notifications[1]

    refreshed(qtbot, app)
    assert len(notifications) == 2


def test_below_80_percent_is_ok_and_quiet(qtbot: QtBot, build_app: BuildApp,
                                         notifications: list[str]) -> None:
    charge(3_120_000)
    app = build_app(monthly_budget_usd=20)
    meter = app.main_window.budget_meter
    qtbot.waitUntil(lambda: meter.level == "ok", timeout=5000)
    assert meter.text() == "Cloud: $3.12 of $20.00"
    assert app.tray.budget_action.text() == "Cloud planning: $3.12 of $20.00 this month"
    assert notifications == []


def test_straight_past_100_percent_notifies_once(qtbot: QtBot, build_app: BuildApp,
                                                notifications: list[str]) -> None:
    charge(25 * USD)
    app = build_app(monthly_budget_usd=20)
    qtbot.waitUntil(lambda: app.main_window.budget_meter.level == "red", timeout=5000)
    assert app.main_window.budget_meter.text() == "Cloud: $25.00 of $20.00"
    assert len(notifications) == 1 and "used up" in notifications[0]


def test_no_budget_means_no_meter_and_no_tray_line(qtbot: QtBot, build_app: BuildApp,
                                                  notifications: list[str]) -> None:
    charge(5 * USD)
    app = build_app()
    qtbot.waitUntil(lambda: app.controller.budget is not None, timeout=5000)
    meter = app.main_window.budget_meter
    assert meter.level == "off" and not meter.isVisible()
    assert not app.tray.budget_action.isVisible()
    assert app.tray.toolTip() == TOOLTIPS[TrayState.IDLE]
    assert notifications == []


def test_saving_a_budget_in_settings_shows_the_meter(qtbot: QtBot, build_app: BuildApp) -> None:
    charge(2 * USD)
    app = build_app()
    qtbot.waitUntil(lambda: app.controller.budget is not None, timeout=5000)
    page = open_cloud_page(qtbot, app)
    page.budget_usd.setValue(10)
    dialog = app.settings_dialog
    assert dialog is not None
    with qtbot.waitSignal(dialog.accepted, timeout=5000):
        dialog.save()
    meter = app.main_window.budget_meter
    qtbot.waitUntil(lambda: meter.text() == "Cloud: $2.00 of $10.00", timeout=5000)
    assert meter.isVisible() and meter.level == "ok"
    assert app.workspace.settings.monthly_budget_usd == 10


def test_the_budget_page_charts_this_months_spend_by_day(qtbot: QtBot,
                                                         build_app: BuildApp) -> None:
    now = datetime.now(UTC)
    first = now.replace(day=1, hour=12, minute=0, second=0, microsecond=0)
    # Three days of this month (day 1, 2 and 3, whatever today is), one month before.
    charge(1_500_000, when=first)
    charge(2_000_000, when=first + timedelta(days=1))
    charge(2_250_000, when=first + timedelta(days=1))  # day 2: $4.25, the most
    charge(500_000, when=first + timedelta(days=2))
    charge(7 * USD, when=first - timedelta(days=3))  # last month
    app = build_app(monthly_budget_usd=20)
    page = open_cloud_page(qtbot, app)
    qtbot.waitUntil(lambda: bool(page.chart.days), timeout=5000)

    next_month = (first + timedelta(days=32)).replace(day=1)
    assert len(page.chart.days) == (next_month - first).days
    assert page.chart.max_micro_usd == 4_250_000
    rects = page.chart.bar_rects()
    assert len(rects) == len(page.chart.days)
    tallest = max(range(len(rects)), key=lambda i: rects[i].height())
    assert page.chart.days[tallest] == (first.date() + timedelta(days=1), 4_250_000)
    heights = [r.height() for r in rects[:3]]
    assert heights[0] == pytest.approx(heights[1] * 1.5 / 4.25)
    assert heights[2] == pytest.approx(heights[1] * 0.5 / 4.25)
    assert all(r.height() == 0 for r in rects[3:])

    assert page.figures["cap"].text() == "$20.00"
    assert page.figures["spent"].text() == "$6.25"
    assert page.figures["reserved"].text() == "$0.00"
    assert page.figures["remaining"].text() == "$13.75"
    table = page.months_table
    assert table.rowCount() == 1
    last_month = first - timedelta(days=3)
    assert table.item(0, 0).text() == month_in_words(last_month.strftime("%Y-%m"))
    assert table.item(0, 1).text() == "$7.00"
    page.budget_usd.setValue(5)  # the figures follow the field before it is saved
    assert page.figures["remaining"].text() == "$0.00"


@pytest.fixture
def openrouter(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenRouterServer]:
    key = KeyState(label="Planning key", limit="10.00", usage="2.50")
    with OpenRouterServer(key=key) as server:
        monkeypatch.setenv(URL_ENV, server.base_url)
        yield server


def test_the_openrouter_key_is_pasted_tested_saved_only_in_the_key_store_and_removed(
        qtbot: QtBot, build_app: BuildApp, openrouter: OpenRouterServer,
        memory_keyring: MemoryKeyring) -> None:
    app = build_app()
    page = open_cloud_page(qtbot, app)
    qtbot.waitUntil(page.key.isEnabled, timeout=5000)
    assert not page.remove_button.isEnabled()  # nothing saved yet
    page.key.setText(API_KEY)
    qtbot.mouseClick(page.test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Planning key" in page.key_result.text(), timeout=10_000)
    assert page.key_result.text() == "✔ Key “Planning key”: limit $10.00, $7.50 remaining."
    assert openrouter.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"
    assert (secrets.SERVICE, secrets.OPENROUTER_KEY) not in memory_keyring.store  # not yet

    dialog = app.settings_dialog
    assert dialog is not None
    with qtbot.waitSignal(dialog.accepted, timeout=5000):
        dialog.save()
    qtbot.waitUntil(lambda: app.settings_dialog is None)
    assert memory_keyring.store[(secrets.SERVICE, secrets.OPENROUTER_KEY)] == API_KEY
    files = [p for p in paths.config_dir().parent.rglob("*") if p.is_file()]
    assert files  # the settings, the ledger, the history: all searched
    for path in files:
        assert API_KEY.encode() not in path.read_bytes(), path

    again = open_cloud_page(qtbot, app)
    qtbot.waitUntil(again.remove_button.isEnabled, timeout=5000)
    assert again.key.text() == ""  # never shown back
    assert again.key.placeholderText().startswith("A key is saved")
    qtbot.mouseClick(again.test_button, Qt.MouseButton.LeftButton)  # tests the saved key
    qtbot.waitUntil(lambda: "Planning key" in again.key_result.text(), timeout=10_000)

    qtbot.mouseClick(again.remove_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "removed" in again.key_result.text(), timeout=5000)
    assert (secrets.SERVICE, secrets.OPENROUTER_KEY) not in memory_keyring.store
    assert not again.remove_button.isEnabled()
    assert not again.key.placeholderText().startswith("A key is saved")


def test_a_rejected_key_says_so(qtbot: QtBot, build_app: BuildApp,
                                openrouter: OpenRouterServer) -> None:
    app = build_app()
    page = open_cloud_page(qtbot, app)
    qtbot.waitUntil(page.key.isEnabled, timeout=5000)
    page.key.setText("sk-or-v1-not-a-real-key")
    qtbot.mouseClick(page.test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.key_result.text().startswith("✘"), timeout=10_000)
    assert "rejected your OpenRouter key" in page.key_result.text()


def test_a_refused_key_store_turns_the_key_field_off(
        qtbot: QtBot, build_app: BuildApp, monkeypatch: pytest.MonkeyPatch) -> None:
    keyring.set_keyring(keyring.backends.fail.Keyring())  # the fixture puts back the old one
    app = build_app(monthly_budget_usd=20)
    page = open_cloud_page(qtbot, app)
    qtbot.waitUntil(lambda: "No secure key store" in page.key_result.text(), timeout=5000)
    if sys.platform == "linux":  # what to install, in words
        assert "install a key store" in page.key_result.text()
        assert "gnome-keyring" in page.key_result.text()
    assert not page.key.isEnabled()
    assert not page.test_button.isEnabled() and not page.remove_button.isEnabled()
    assert page.edited_key() is None
    dialog = app.settings_dialog
    assert dialog is not None
    with qtbot.waitSignal(dialog.accepted, timeout=5000):  # the rest still saves
        dialog.save()


class LockedKeyring(MemoryKeyring):
    """A key store that is there but locked: every read and write is refused."""

    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("the collection is locked")

    set_password = get_password  # type: ignore[assignment]


def test_a_locked_key_store_says_how_to_unlock_it(
        qtbot: QtBot, build_app: BuildApp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "SECURE_BACKENDS",
                        secrets.SECURE_BACKENDS | {f"{__name__}.LockedKeyring"})
    keyring.set_keyring(LockedKeyring())  # the fixture puts back the old one
    app = build_app()
    page = open_cloud_page(qtbot, app)
    qtbot.waitUntil(lambda: "locked" in page.key_result.text(), timeout=5000)
    assert "Unlock it" in page.key_result.text()
    assert page.key.isEnabled()  # it may be unlocked while the dialog is open
