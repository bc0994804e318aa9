"""The system-tray icon: its state shows idle, answering or office node unreachable, its
menu and tooltip carry the cloud planning budget, and its menu is the way into everything
else."""

from __future__ import annotations

from enum import StrEnum

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon, QWidget

from app.ui.resources import icon


class TrayState(StrEnum):
    IDLE = "idle"
    BUSY = "busy"
    ERROR = "error"


TOOLTIPS = {
    TrayState.IDLE: "Switchboard",
    TrayState.BUSY: "Switchboard — answering…",
    TrayState.ERROR: "Switchboard — office node unreachable",
}


class Tray(QSystemTrayIcon):
    """Signals (besides QSystemTrayIcon's):
    quickAskRequested(), openRequested(), summarizeRequested(), usageRequested(),
    settingsRequested(), quitRequested()
    — emitted from the menu; a left click also asks for quick ask.
    """

    quickAskRequested = Signal()
    summarizeRequested = Signal()
    openRequested = Signal()
    usageRequested = Signal()
    settingsRequested = Signal()
    quitRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._icons = {state: icon(f"tray-{state}") for state in TrayState}
        self.state = TrayState.IDLE
        self.menu = QMenu()
        self.quick_ask_action = self._add("Quick ask…", self.quickAskRequested.emit)
        self.open_action = self._add("Open Switchboard", self.openRequested.emit)
        self.summarize_action = self._add("Summarise a file…", self.summarizeRequested.emit)
        self.menu.addSeparator()
        self.status_action = QAction("Office node: checking…", self.menu)
        self.status_action.setEnabled(False)  # an information line, not a command
        self.menu.addAction(self.status_action)
        self.budget_action = QAction("", self.menu)
        self.budget_action.setEnabled(False)
        self.budget_action.setVisible(False)  # until a budget is set
        self.menu.addAction(self.budget_action)
        self.menu.addSeparator()
        self.usage_action = self._add("Usage…", self.usageRequested.emit)
        self.settings_action = self._add("Settings…", self.settingsRequested.emit)
        self.quit_action = self._add("Quit Switchboard", self.quitRequested.emit)
        self.setContextMenu(self.menu)
        self.activated.connect(self._on_activated)
        self.budget_line = ""
        self.set_state(TrayState.IDLE)

    def _add(self, text: str, slot: object) -> QAction:
        action = QAction(text, self.menu)
        action.triggered.connect(slot)
        self.menu.addAction(action)
        return action

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger,
                      QSystemTrayIcon.ActivationReason.DoubleClick):
            self.quickAskRequested.emit()

    def set_state(self, state: TrayState) -> None:
        self.state = state
        self.setIcon(self._icons[state])
        self._update_tooltip()

    def set_status_line(self, text: str) -> None:
        self.status_action.setText(text)

    def set_budget_line(self, text: str) -> None:
        """ "Cloud planning: $3.12 of $20.00 this month" in the menu and the tooltip; ""
        (cloud planning off) shows neither."""
        self.budget_line = text
        self.budget_action.setText(text)
        self.budget_action.setVisible(bool(text))
        self._update_tooltip()

    def _update_tooltip(self) -> None:
        self.setToolTip("\n".join(filter(None, (TOOLTIPS[self.state], self.budget_line))))
