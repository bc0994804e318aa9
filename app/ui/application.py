"""Builds the tray app: the core loop and bridge, the tray icon, the main window, quick
ask and settings, wired together (the budget notifications too); and runs it as one
instance per user."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QPoint, QRect, QSize, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from app import __version__
from app.core import crash
from app.core.setup_check import needs_setup
from app.core.workspace import Workspace
from app.ui.bridge import Bridge, CoreLoop
from app.ui.budget_meter import BudgetAlerts, BudgetReading, budget_level, tray_line
from app.ui.chat_controller import ChatController
from app.ui.garbage import GuiThreadCollector
from app.ui.global_hotkey import GlobalHotkey
from app.ui.main_window import MainWindow
from app.ui.notifications import Notifier
from app.ui.quick_ask import QuickAsk
from app.ui.resources import icon
from app.ui.theme import apply_theme
from app.ui.tray import Tray, TrayState

if TYPE_CHECKING:
    # Loaded when first opened: most starts need neither.
    from app.ui.first_run import FirstRunGuide
    from app.ui.settings_dialog import SettingsDialog
    from app.ui.usage_window import UsageWindow

log = logging.getLogger(__name__)


class SwitchboardApp(QObject):
    """Everything the user sees, over one workspace."""

    def __init__(self, workspace: Workspace, tray: Tray | None = None) -> None:
        super().__init__()
        self.workspace = workspace
        apply_theme(workspace.settings.theme)  # before any window is built
        # Cycles (some holding Qt objects) are collected on the GUI thread; started by
        # build_app (tests run one of their own).
        self.collector = GuiThreadCollector()
        self.core_loop = CoreLoop()
        self.bridge = Bridge(self.core_loop)
        self.controller = ChatController(self.bridge, workspace)
        self.main_window = MainWindow(self.controller)
        self.quick_ask = QuickAsk(self.controller)
        self.tray = tray or Tray()
        self.settings_dialog: SettingsDialog | None = None
        self.first_run: FirstRunGuide | None = None
        self.usage_window: UsageWindow | None = None
        self.crash_notice: QMessageBox | None = None
        self.budget_alerts = BudgetAlerts()

        self.tray.quickAskRequested.connect(self.open_quick_ask)
        self.tray.openRequested.connect(self.show_main)
        self.tray.settingsRequested.connect(self.open_settings)
        self.tray.usageRequested.connect(self.open_usage)
        self.main_window.usageRequested.connect(self.open_usage)
        self.main_window.settingsRequested.connect(self.open_settings)
        self.main_window.summarizeRequested.connect(self.choose_file_to_summarize)
        self.main_window.quitRequested.connect(self.quit)
        self.tray.quitRequested.connect(self.quit)
        self.quick_ask.continueRequested.connect(self.show_main)
        self.quick_ask.fileDropped.connect(self.summarize_file)
        self.quick_ask.settingsRequested.connect(self.open_settings)
        self.hotkey = GlobalHotkey(self)
        self.hotkey.activated.connect(self.open_quick_ask)
        self.tray.summarizeRequested.connect(self.choose_file_to_summarize)
        self.controller.busyChanged.connect(self._update_tray)
        self.controller.tierChanged.connect(self._update_tray)
        self.notifier = Notifier(self._notify, self._away, self)
        self.controller.busyChanged.connect(
            lambda busy: self.notifier.busy_changed(busy, self.controller.working_on))
        self.controller.tierChanged.connect(self.notifier.tier_changed)
        self.controller.chatsChanged.connect(self.main_window.reload_chats)
        self.controller.budgetChanged.connect(self._on_budget)

    def start(self) -> None:
        self.tray.show()
        self.controller.start()
        # Reports of a crash last time: looked for off the GUI thread, offered when found.
        self.bridge.run(asyncio.to_thread(crash.reports_left), on_done=self.offer_crash_reports)
        self.main_window.reload_chats()
        self.main_window.show_tier(self.controller.tier)
        self._update_tray()
        if self.workspace.problems:
            text = " ".join(self.workspace.problems)
            self.main_window.statusBar().showMessage(text, 30_000)
            self.tray.showMessage("Switchboard", text, icon("app"), 10_000)
        if needs_setup(self.workspace.settings):
            self.open_first_run()
        self.register_hotkey(quietly=True)

    def register_hotkey(self, *, quietly: bool = False) -> None:
        """The quick ask shortcut from the settings. Why it can't be is logged, and after
        Settings are saved also shown (at start only logged: every start on a desktop
        without global shortcuts would say it)."""
        why = self.hotkey.register(self.workspace.settings.quick_ask_hotkey)
        if why is not None:
            log.info("quick ask shortcut: %s", why)
            if not quietly:
                self.main_window.statusBar().showMessage(why, 30_000)

    def open_first_run(self) -> None:
        """The first-run guide: with nowhere to answer from yet, show how to set it up
        rather than leave a tray icon and a question that can only fail."""
        if self.first_run is None:
            from app.ui.first_run import FirstRunGuide

            guide = FirstRunGuide(self.bridge, self.workspace, self.main_window)
            guide.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            guide.settingsSaved.connect(self._settings_saved)
            guide.accepted.connect(self.show_main)  # "Done": straight to asking
            guide.finished.connect(self._first_run_closed)
            self.first_run = guide
        self.first_run.show()
        self.first_run.raise_()
        self.first_run.activateWindow()

    def _first_run_closed(self) -> None:
        self.first_run = None

    def offer_crash_reports(self, reports: list[Path]) -> None:
        """Say that Switchboard stopped unexpectedly last time, and offer the report."""
        if not reports:
            return
        report = reports[-1]
        box = QMessageBox(QMessageBox.Icon.Warning, "Switchboard",
                          "Switchboard stopped unexpectedly last time. A report of what it "
                          "was doing was saved; IT may ask you for it.",
                          QMessageBox.StandardButton.NoButton, self.main_window)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        open_report = box.addButton("Open the report", QMessageBox.ButtonRole.ActionRole)
        open_folder = box.addButton("Open the folder", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Close)

        def clicked(button: object) -> None:
            if button is open_report:
                QDesktopServices.openUrl(QUrl.fromLocalFile(str(report)))
            elif button is open_folder:
                QDesktopServices.openUrl(QUrl.fromLocalFile(str(report.parent)))

        box.buttonClicked.connect(clicked)
        self.crash_notice = box
        box.open()
        self.tray.showMessage("Switchboard", "Switchboard stopped unexpectedly last time; "
                              "a report was saved.", icon("app"), 10_000)

    def _notify(self, title: str, text: str) -> None:
        self.tray.showMessage(title, text, icon("app"), 10_000)

    def _away(self) -> bool:
        """Whether the user is elsewhere: no Switchboard window is the active one."""
        return QApplication.activeWindow() is None

    def open_quick_ask(self) -> None:
        """Quick ask opens beside the tray icon (or in the screen's corner nearest it)."""
        if not self.quick_ask.isVisible():
            self.quick_ask.move(_beside(self.tray.geometry(), self.quick_ask.size()))
        self.quick_ask.open()

    def show_main(self, chat_id: int | None = None) -> None:
        window = self.main_window
        if chat_id is not None:
            self.main_window.reload_chats()
            window.open_chat(chat_id)
        window.show()
        window.setWindowState(window.windowState() & ~Qt.WindowState.WindowMinimized)
        window.raise_()
        window.activateWindow()
        window.composer.setFocus()

    def summarize_file(self, path: Path) -> None:
        """A file from the tray or quick ask: summarised into a chat of its own."""
        self.show_main()
        self.main_window.summarize(path, new_chat=True)

    def choose_file_to_summarize(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            None, "Summarise a file", str(Path.home()),
            "Documents (*.pdf *.docx *.txt *.md *.markdown *.html *.htm);;All files (*)")
        if path:
            self.summarize_file(Path(path))

    def open_settings(self) -> None:
        if self.settings_dialog is None:
            from app.ui.settings_dialog import SettingsDialog

            # A new one each time, so it shows the settings as they are now; it deletes
            # itself when closed.
            self.settings_dialog = SettingsDialog(self.bridge, self.workspace, self.main_window)
            self.settings_dialog.accepted.connect(self._settings_saved)
            # Closed (deleted a moment later), it must not be shown again: a new one is.
            self.settings_dialog.finished.connect(self._settings_closed)
        self.settings_dialog.show()
        self.settings_dialog.raise_()
        self.settings_dialog.activateWindow()

    def open_usage(self) -> None:
        """The Usage page (its charts' library is loaded the first time)."""
        if self.usage_window is None:
            from app.ui.usage_window import UsageWindow

            # A window of its own, owned by the main window: Qt deletes it with that,
            # before the interpreter's exit could delete its charts out of order.
            self.usage_window = UsageWindow(self.bridge, self.workspace, self.main_window)
        self.usage_window.show()
        self.usage_window.raise_()
        self.usage_window.activateWindow()

    def _settings_closed(self) -> None:
        self.settings_dialog = None

    def _settings_saved(self) -> None:
        apply_theme(self.workspace.settings.theme)
        self.register_hotkey()
        self.controller.settings_changed()
        self.controller.refresh_budget()  # the budget may have changed

    def _on_budget(self, reading: BudgetReading) -> None:
        off = budget_level(reading) == "off"
        self.tray.set_budget_line("" if off else tray_line(reading))
        alert = self.budget_alerts.due(reading)
        if alert is not None:
            self.tray.showMessage("Switchboard — cloud planning budget", alert,
                                  icon("app"), 15_000)

    def _update_tray(self, _: object = None) -> None:
        """The tray says what the window's status bar says: both follow the tier's state."""
        tier = self.controller.tier
        self.tray.set_status_line(tier.line)
        if self.controller.busy:
            self.tray.set_state(TrayState.BUSY)
        elif tier.down:
            self.tray.set_state(TrayState.ERROR)
        else:
            # Not set up is not broken: the tray stays calm and the menu says what to do.
            self.tray.set_state(TrayState.IDLE)

    def quit(self) -> None:
        # Not quit(): in Qt 6 that first asks every window to close, and the main window
        # refuses (closing it only hides it to the tray), which would cancel quitting.
        QApplication.exit(0)

    def shutdown(self) -> None:
        """Stop the stream, close the core on its own thread, end the thread."""
        self.hotkey.unregister()
        self.controller.shutdown()
        self.collector.stop()
        self.tray.hide()

        async def cleanup() -> None:
            await self.workspace.close()

        self.core_loop.stop(cleanup=cleanup)


def _beside(icon_rect: QRect, size: QSize) -> QPoint:
    screen = QGuiApplication.screenAt(icon_rect.center()) or QGuiApplication.primaryScreen()
    area = screen.availableGeometry()
    margin = 8
    if icon_rect.isEmpty():  # no tray geometry (some desktops don't say): bottom right
        return QPoint(area.right() - size.width() - margin,
                      area.bottom() - size.height() - margin)
    x = icon_rect.center().x() - size.width() // 2
    x = max(area.left() + margin, min(x, area.right() - size.width() - margin))
    if icon_rect.center().y() < area.center().y():  # tray at the top: open below it
        y = max(area.top(), icon_rect.bottom()) + margin
    else:
        y = min(area.bottom(), icon_rect.top()) - size.height() - margin
    return QPoint(x, y)


def build_app(tray: Tray, log_file: Path) -> SwitchboardApp:
    """The app around a tray icon already shown (see app.ui.start), over the user's
    workspace, started."""
    log.info("Switchboard %s starting; log at %s", __version__, log_file)
    workspace = Workspace.open()
    app = SwitchboardApp(workspace, tray)
    app.collector.start()
    app.start()
    return app
