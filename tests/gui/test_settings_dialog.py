"""Settings behaves like a desktop dialog: Enter in a field doesn't save and close it,
seconds read as whole seconds, the answer knobs have a tab of their own, "Remove the
saved token" shows only when a token is saved; and the General tab sets the look (system,
light, dark) and the quick ask shortcut, or none."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDoubleSpinBox
from pytestqt.qtbot import QtBot

from app.core import paths, secrets
from app.core.settings import Settings
from app.ui.settings_dialog import SettingsDialog
from app.ui.theme import apply_theme
from tests.gui.conftest import BuildApp


def opened(build_app: BuildApp, **settings: object) -> SettingsDialog:
    app = build_app(**settings)
    app.open_settings()
    assert app.settings_dialog is not None
    return app.settings_dialog


def test_enter_in_a_field_neither_saves_nor_closes(qtbot: QtBot, build_app: BuildApp) -> None:
    dialog = opened(build_app)
    dialog.token.setFocus()
    qtbot.keyClicks(dialog.token, "tok-typed")
    qtbot.keyClick(dialog.token, Qt.Key.Key_Return)
    model_edit = dialog.model.lineEdit()
    assert model_edit is not None
    qtbot.keyClick(model_edit, Qt.Key.Key_Enter)
    # Save starts by turning the buttons off until it has finished: it never started.
    assert dialog.isVisible() and dialog.buttons.isEnabled()
    assert not paths.settings_file().exists()
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        qtbot.mouseClick(dialog.buttons.button(dialog.buttons.StandardButton.Save),
                         Qt.MouseButton.LeftButton)
    assert paths.settings_file().exists()


def test_seconds_are_whole_and_the_answer_knobs_have_their_own_tab(
        build_app: BuildApp) -> None:
    dialog = opened(build_app)
    timeout = dialog.numeric["connect_timeout_s"]
    assert isinstance(timeout, QDoubleSpinBox) and timeout.text() == "10"
    tabs = [dialog.pages.tabText(i) for i in range(dialog.pages.count())]
    assert tabs == ["Chats", "Answers", "Cloud planning", "General"]
    answers = dialog.pages.widget(tabs.index("Answers"))
    assert answers.isAncestorOf(dialog.numeric["temperature"])
    assert answers.isAncestorOf(timeout)


def test_remove_the_token_shows_only_when_one_is_saved(qtbot: QtBot,
                                                      build_app: BuildApp) -> None:
    dialog = opened(build_app)
    qtbot.waitUntil(lambda: dialog.token.placeholderText().startswith("Access token"))
    assert dialog.remove_token.isHidden()
    dialog.close()

    secrets.set_secret(secrets.NODE_TOKEN, "tok-saved")
    again = opened(build_app)
    qtbot.waitUntil(lambda: not again.remove_token.isHidden())
    assert "saved" in again.token.placeholderText()


@pytest.fixture
def system_theme_after() -> Iterator[None]:
    yield
    apply_theme("system")  # the app applies what was saved; the next test starts plain


def save(qtbot: QtBot, dialog: SettingsDialog) -> Settings:
    with qtbot.waitSignal(dialog.accepted, timeout=10_000):
        qtbot.mouseClick(dialog.buttons.button(dialog.buttons.StandardButton.Save),
                         Qt.MouseButton.LeftButton)
    return Settings.load()[0]


def test_the_look_and_the_quick_ask_shortcut_are_saved(
        qtbot: QtBot, build_app: BuildApp, system_theme_after: None) -> None:
    dialog = opened(build_app)
    general = dialog.pages.widget(dialog.pages.count() - 1)
    assert general.isAncestorOf(dialog.theme) and general.isAncestorOf(dialog.hotkey)
    assert dialog.theme.currentText() == "System"
    assert dialog.hotkey.keySequence().toString() == "Ctrl+Alt+Space"  # the default

    dialog.theme.setCurrentIndex(dialog.theme.findText("Dark"))
    dialog.pages.setCurrentWidget(general)
    dialog.hotkey_clear.click()
    qtbot.keyClick(dialog.hotkey, Qt.Key.Key_K,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: not dialog.hotkey.keySequence().isEmpty())
    saved = save(qtbot, dialog)
    assert saved.theme == "dark" and saved.quick_ask_hotkey == "Ctrl+Shift+K"


def test_clear_turns_the_shortcut_off(qtbot: QtBot, build_app: BuildApp,
                                      system_theme_after: None) -> None:
    dialog = opened(build_app, theme="light", quick_ask_hotkey="Ctrl+Shift+K")
    assert dialog.theme.currentText() == "Light"
    assert dialog.hotkey.keySequence().toString() == "Ctrl+Shift+K"
    dialog.hotkey_clear.click()
    saved = save(qtbot, dialog)
    assert saved.quick_ask_hotkey == "" and saved.theme == "light"
