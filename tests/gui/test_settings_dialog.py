"""Settings behaves like a desktop dialog: Enter in a field doesn't save and close it,
seconds read as whole seconds, the answer knobs have a tab of their own, and "Remove the
saved token" shows only when a token is saved."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDoubleSpinBox
from pytestqt.qtbot import QtBot

from app.core import paths, secrets
from app.ui.settings_dialog import SettingsDialog
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
    assert tabs == ["Chats", "Answers", "Cloud planning"]
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
