"""The window is complete without a tray: its menus reach Settings (Ctrl+,), Usage,
summarising a file, Quit, the keyboard shortcuts and About; and where there is no tray
to come back from, closing the window quits."""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QMessageBox
from pytestqt.qtbot import QtBot

from app.ui.main_window import MainWindow
from tests.gui.conftest import BuildApp


def action(window: MainWindow, text: str) -> QAction:
    for menu in window.menuBar().findChildren(QMenu):
        for item in menu.actions():
            if item.text().replace("&", "").rstrip("…") == text:
                return item
    raise AssertionError(f"no menu item {text!r}")


def test_settings_and_usage_open_from_the_window(qtbot: QtBot, build_app: BuildApp) -> None:
    app = build_app()
    window = app.main_window
    assert "Ctrl+," in [k.toString() for k in action(window, "Settings").shortcuts()]
    action(window, "Settings").trigger()
    assert app.settings_dialog is not None and app.settings_dialog.isVisible()
    app.settings_dialog.reject()
    action(window, "Usage").trigger()
    assert app.usage_window is not None
    qtbot.waitUntil(app.usage_window.isVisible)


def test_the_shortcuts_list_is_the_windows_own(qtbot: QtBot, build_app: BuildApp) -> None:
    window = build_app().main_window
    listed = dict(window.shortcuts())
    assert "Ctrl+," in listed["Settings"]
    assert listed["New chat"] == "Ctrl+N" and listed["Rename chat"] == "F2"
    action(window, "Keyboard shortcuts").trigger()
    box = next(w for w in window.findChildren(QMessageBox) if w.windowTitle() ==
               "Keyboard shortcuts")
    qtbot.waitUntil(box.isVisible)
    assert "Rename chat" in box.text() and "Shift+Enter" in box.text()
    box.close()


def only_said(window: MainWindow) -> None:
    """Keep the app from really quitting the test's QApplication or opening a modal file
    chooser: only the signals count."""
    window.quitRequested.disconnect()
    window.summarizeRequested.disconnect()


def test_quit_and_summarise_are_in_the_file_menu(qtbot: QtBot, build_app: BuildApp) -> None:
    window = build_app().main_window
    only_said(window)
    with qtbot.waitSignal(window.quitRequested):
        action(window, "Quit Switchboard").trigger()
    with qtbot.waitSignal(window.summarizeRequested):
        action(window, "Summarise a document").trigger()


def test_without_a_tray_closing_the_window_quits(qtbot: QtBot, build_app: BuildApp) -> None:
    window = build_app().main_window
    only_said(window)
    window.show()
    with qtbot.assertNotEmitted(window.quitRequested):
        window.close()  # with a tray: only hidden
    assert window.isHidden()
    window.quit_on_close = True
    window.show()
    with qtbot.waitSignal(window.quitRequested):
        window.close()
