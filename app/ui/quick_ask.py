"""Quick ask: a small window from the tray or a shortcut. Type, press Enter, watch the
answer stream in under the question; quick questions continue one chat ("Quick
questions") until New starts another, and "Continue in window" opens it in the main
window."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence, QPalette, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTextBrowser, QVBoxLayout, QWidget

from app.core.chat import AnswerFinished, ChatEvent, MessageAdded, TextAppended
from app.core.errors import NotConfigured, SwitchboardError
from app.core.history import Chat
from app.ui.chat_controller import ChatController
from app.ui.resources import icon
from app.ui.widgets import Composer, ErrorBanner, FileDrops

QUICK_CHAT_TITLE = "Quick questions"  # as the core names the first one
STOPPED = "— stopped"
QUESTION_SHOWN = 300  # characters shown of a long (pasted) question; all of it is in the chat
WAITING = "The answer appears here."


class QuickAsk(QWidget):
    """Signals:
    continueRequested(int): open this chat id in the main window.
    fileDropped(object): a file (Path) was dropped here to be summarised.
    settingsRequested(): "Open Settings", offered when no office node is set up.
    """

    continueRequested = Signal(int)
    fileDropped = Signal(object)  # a Path: summarised in the main window
    settingsRequested = Signal()

    def __init__(self, controller: ChatController, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Tool | Qt.WindowType.WindowStaysOnTopHint)
        self.controller = controller
        self.chat_id: int | None = None
        self._answer_id: int | None = None
        self._fresh = False  # New was pressed: the next question starts a chat of its own
        self._waiting = False  # a question was sent and its answer has not ended
        self.setWindowTitle("Switchboard — Quick ask")
        self.setWindowIcon(icon("app"))
        self.resize(520, 360)

        self.composer = Composer()
        self.composer.setMaximumHeight(80)
        self.composer.submitted.connect(self.ask)
        self.question = QLabel()
        self.question.setObjectName("quickQuestion")
        self.question.setTextFormat(Qt.TextFormat.PlainText)  # the user's words, as typed
        self.question.setWordWrap(True)
        self.question.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.question.setStyleSheet("#quickQuestion { font-weight: bold; }")
        self.question.hide()
        self.answer = QTextBrowser()
        self.answer.setOpenExternalLinks(False)
        self.answer.setPlaceholderText(WAITING)
        self.error_banner = ErrorBanner()
        self.settings_button = QPushButton("Open Settings")
        self.settings_button.hide()
        self.settings_button.clicked.connect(self._open_settings)
        self.new_button = QPushButton("New")
        self.new_button.setToolTip("Start a new chat with the next question (Ctrl+N)")
        self.new_button.clicked.connect(self.new_chat)
        new_action = QAction("New quick chat", self)
        new_action.setShortcut(QKeySequence.StandardKey.New)
        new_action.triggered.connect(self.new_chat)
        self.addAction(new_action)
        self.new_action = new_action
        self.continue_button = QPushButton("Continue in window")
        self.continue_button.setEnabled(False)
        self.continue_button.clicked.connect(self._continue)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(controller.stop)
        buttons = QHBoxLayout()
        buttons.addWidget(self.new_button)
        buttons.addWidget(self.settings_button)
        buttons.addStretch(1)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.continue_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.composer)
        layout.addWidget(self.question)
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
        """Send `prompt` in the quick questions chat (a new one after New)."""
        if self.controller.busy or not prompt.strip():
            return
        workspace = self.controller.workspace
        chat = (partial(workspace.create_chat, QUICK_CHAT_TITLE, kind="quick") if self._fresh
                else workspace.quick_chat)
        self._waiting = True  # from here, a failure (even finding the chat) is this one's
        self.controller.call(chat, on_done=lambda chat: self._send(chat, prompt))

    def _send(self, chat: Chat, prompt: str) -> None:
        self._fresh = False  # made now: quick_chat() finds it from here on
        if not self.controller.send(chat.id, prompt, pasted=self.composer.pasted_in(prompt)):
            self._waiting = False
            return  # another answer is streaming; the question stays in the composer
        self._clear()
        self.chat_id = chat.id
        self._waiting = True
        shown = " ".join(prompt.split())
        self.question.setText(shown if len(shown) <= QUESTION_SHOWN
                              else shown[:QUESTION_SHOWN - 1] + "…")
        self.question.show()
        self.composer.clear()

    def new_chat(self) -> None:
        """The next question starts a chat of its own, which quick ask continues from then
        on; the one before stays in the main window's list."""
        self._fresh = True
        self.chat_id = None
        self._clear()
        self.question.clear()
        self.question.hide()
        self.composer.setFocus()

    def _clear(self) -> None:
        self._answer_id = None
        self._waiting = False
        self.error_banner.clear_error()
        self.settings_button.hide()
        self.answer.clear()
        self.answer.setPlaceholderText(WAITING)
        self.continue_button.setEnabled(False)

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
            self._waiting = False
            self.answer.setMarkdown(event.message.content)
            self.answer.setPlaceholderText("")  # failed before a word: the banner says why
            if event.message.status == "cancelled":
                self._mark(STOPPED)
            if event.error is not None:
                self._show_error(event.error)

    def _mark(self, note: str) -> None:
        """A line after the answer, in the placeholder's grey, saying how it ended."""
        cursor = self.answer.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if self.answer.toPlainText():
            cursor.insertBlock()
        style = QTextCharFormat()
        style.setFontItalic(True)
        style.setForeground(self.palette().color(QPalette.ColorRole.PlaceholderText))
        cursor.insertText(note, style)

    def _on_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)

    def _on_failed(self, error: SwitchboardError) -> None:
        # Only what went wrong with this window's question, and once: an answer's error
        # comes with the answer (which ends the wait), then again here.
        if self._waiting:
            self._waiting = False
            self._show_error(error)

    def _show_error(self, error: SwitchboardError) -> None:
        self.error_banner.show_error(error)
        self.settings_button.setVisible(isinstance(error, NotConfigured))

    def _open_settings(self) -> None:
        self.hide()  # not left on top of the Settings dialog
        self.settingsRequested.emit()

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
