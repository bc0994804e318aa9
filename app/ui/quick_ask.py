"""Quick ask: a small window from the tray. Type, press Enter, watch the answer stream
in; "Continue in window" carries the chat over to the main window."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent, QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QTextBrowser, QVBoxLayout, QWidget

from app.core.chat import AnswerFinished, ChatEvent, MessageAdded, TextAppended
from app.core.errors import SwitchboardError
from app.core.history import Chat
from app.ui.chat_controller import ChatController
from app.ui.resources import icon
from app.ui.widgets import Composer, ErrorBanner, FileDrops


class QuickAsk(QWidget):
    """Signals:
    continueRequested(int): open this chat id in the main window.
    fileDropped(object): a file (Path) was dropped here to be summarised.
    """

    continueRequested = Signal(int)
    fileDropped = Signal(object)  # a Path: summarised in the main window

    def __init__(self, controller: ChatController, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Tool | Qt.WindowType.WindowStaysOnTopHint)
        self.controller = controller
        self.chat_id: int | None = None
        self._answer_id: int | None = None
        self.setWindowTitle("Switchboard — Quick ask")
        self.setWindowIcon(icon("app"))
        self.resize(520, 360)

        self.composer = Composer()
        self.composer.setMaximumHeight(80)
        self.composer.submitted.connect(self.ask)
        self.answer = QTextBrowser()
        self.answer.setOpenExternalLinks(False)
        self.answer.setPlaceholderText("The answer appears here.")
        self.error_banner = ErrorBanner()
        self.continue_button = QPushButton("Continue in window")
        self.continue_button.setEnabled(False)
        self.continue_button.clicked.connect(self._continue)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(controller.stop)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.continue_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.composer)
        layout.addWidget(self.answer, 1)
        layout.addWidget(self.error_banner)
        layout.addLayout(buttons)

        FileDrops(self, self._file_dropped)
        controller.chatEvent.connect(self._on_event)
        controller.busyChanged.connect(self._on_busy)
        controller.failed.connect(self._on_failed)

    def open(self) -> None:
        """Show, raised and focused, ready for a new question."""
        self.show()
        self.raise_()
        self.activateWindow()
        self.composer.setFocus()

    def ask(self, prompt: str) -> None:
        if self.controller.busy or not prompt.strip():
            return
        self.error_banner.clear_error()
        self.answer.clear()
        self._answer_id = None

        def start(chat: Chat) -> None:
            self.chat_id = chat.id
            if self.controller.send(chat.id, prompt,
                                    pasted=self.composer.pasted_in(prompt)):
                self.composer.clear()

        # Every quick question starts a chat of its own; it shows up in the main window.
        self.controller.new_chat(start)

    def _on_event(self, event: ChatEvent) -> None:
        # The answer only: a planned task's steps show in the main window.
        if isinstance(event, MessageAdded) and event.message.chat_id == self.chat_id \
                and event.message.role == "assistant" and event.message.kind == "":
            self._answer_id = event.message.id
            self.continue_button.setEnabled(True)
        elif isinstance(event, TextAppended) and event.message_id == self._answer_id:
            cursor = self.answer.textCursor()
            cursor.movePosition(QTextCursor.MoveOperation.End)
            cursor.insertText(event.text)  # appended, never re-rendered whole
            self.answer.ensureCursorVisible()
        elif isinstance(event, AnswerFinished) and event.message.id == self._answer_id:
            self.answer.setMarkdown(event.message.content)

    def _on_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)

    def _on_failed(self, error: SwitchboardError) -> None:
        if self.isVisible():
            self.error_banner.show_error(error)

    def _file_dropped(self, path: Path) -> None:
        self.hide()
        self.fileDropped.emit(path)

    def _continue(self) -> None:
        if self.chat_id is not None:
            self.continueRequested.emit(self.chat_id)
            self.hide()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 — Qt's name
        if event.key() == Qt.Key.Key_Escape:
            self.hide()
            return
        super().keyPressEvent(event)
