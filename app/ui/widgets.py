"""Small widgets shared by the windows: the composer and the error banner (the main
window and quick ask), and how a setting that IT's policy fixes or bounds is shown
(Settings and its Cloud planning page)."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from pathlib import Path

from PySide6.QtCore import QEvent, QMimeData, QObject, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent, QKeyEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QWidget,
)

from app.core.errors import SwitchboardError
from app.core.policy import Limit
from app.core.tier_status import TierState
from app.ui.theme import banner_style, follow_palette, show_tone


class Composer(QPlainTextEdit):
    """Where the user types a prompt. Enter sends, Shift+Enter starts a new line. It
    remembers what was pasted or dropped into it: that material stays on the office's
    hardware (`pasted_in`).

    Signals:
        submitted(str): the user pressed Enter on a non-empty prompt.
    """

    submitted = Signal(str)
    MIN_PASTED = 40  # a shorter paste (a word, a name) is part of the request itself

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setPlaceholderText("Ask anything… (Enter to send, Shift+Enter for a new line)")
        self.setTabChangesFocus(True)
        self._pasted: list[str] = []

    def insertFromMimeData(self, source: QMimeData) -> None:  # noqa: N802 — Qt's name
        text = source.text()
        if len(text.strip()) >= self.MIN_PASTED:
            self._pasted.append(text.strip())
        super().insertFromMimeData(source)

    def pasted_in(self, prompt: str) -> tuple[str, ...]:
        """The pasted passages still in `prompt`, as pasted."""
        return tuple(p for p in self._pasted if p in prompt)

    def clear(self) -> None:
        self._pasted.clear()
        super().clear()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 — Qt's name
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            text = self.toPlainText()
            if text.strip():
                self.submitted.emit(text)
            event.accept()
            return
        super().keyPressEvent(event)


class TierBanner(QFrame):
    """A line over the chat while the chat tier can't answer (or nothing is set up): what
    is wrong, what to do, and the buttons to do it. It goes as soon as the tier answers.

    Signals:
        settingsRequested(): "Open Settings".
        checkRequested(): "Check again" (Switchboard checks by itself too).
    """

    settingsRequested = Signal()
    checkRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        self.settings_button = QPushButton("Open Settings")
        self.settings_button.clicked.connect(self.settingsRequested)
        self.check_button = QPushButton("Check again")
        self.check_button.clicked.connect(self.checkRequested)
        layout = QHBoxLayout(self)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.check_button)
        layout.addWidget(self.settings_button)
        self.hide()

    def show_state(self, tier: TierState) -> None:
        """Show the tier's problem, or hide when it has none."""
        if not tier.problem:
            self.hide()
            return
        self.text.setText(f"{tier.problem} {tier.hint}".strip())
        self.check_button.setVisible(tier.down)
        self.show()


class ErrorBanner(QLabel):
    """A line above the composer with what went wrong and what to do, for failures that
    belong to no answer (an answer's own failure is shown in its bubble)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("errorBanner")
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        follow_palette(self, banner_style)  # a tint of the error colour, light or dark
        self.hide()

    def show_error(self, error: SwitchboardError) -> None:
        self.setText(f"<b>{escape(error.title)}</b><br>{escape(error.hint)}"
                     + (f"<br><small>{escape(error.detail)}</small>" if error.detail else ""))
        self.show()

    def clear_error(self) -> None:
        self.clear()
        self.hide()


def dropped_files(mime: QMimeData) -> list[Path]:
    """The local files in a drag, in order (links and remote URLs are ignored)."""
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]


class FileDrops(QObject):
    """Lets a widget take a dropped file: it accepts drags that carry local files and
    calls `on_file` with the first one dropped. One place for the window, quick ask and
    the document panel."""

    def __init__(self, widget: QWidget, on_file: Callable[[Path], None]) -> None:
        super().__init__(widget)
        self.on_file = on_file
        widget.setAcceptDrops(True)
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if isinstance(event, QDragEnterEvent | QDragMoveEvent):
            if dropped_files(event.mimeData()):
                event.acceptProposedAction()
                return True
        elif isinstance(event, QDropEvent) and (files := dropped_files(event.mimeData())):
            event.acceptProposedAction()
            self.on_file(files[0])
            return True
        return False




# -- what IT's policy fixes ---------------------------------------------------------------


def policy_tooltip(limit: Limit, source: Path) -> str:
    return f"{limit.why}, in the computer's policy file {source}"


def it_note(limit: Limit, source: Path) -> QLabel:
    """The words under a field that IT's policy fixes or bounds; the tooltip says which
    file the rule comes from, so a user can tell IT what they see."""
    note = QLabel(limit.why)
    note.setWordWrap(True)
    note.setTextFormat(Qt.TextFormat.PlainText)
    show_tone(note, "note")  # quieter than the field it explains
    note.setToolTip(policy_tooltip(limit, source))
    return note


def add_setting_row(form: QFormLayout, label: str, field: QWidget,
                    choice: QComboBox | None, limit: Limit | None, source: Path) -> None:
    """A setting's row: IT's choice of values with its note where the policy limits it,
    else the free field. A replaced field is kept hidden (owned by the form's widget), so
    code may still read it, but it is never shown."""
    if choice is None or limit is None:
        form.addRow(label, field)
        return
    field.setParent(form.parentWidget())
    field.hide()
    form.addRow(label, choice)
    form.addRow("", it_note(limit, source))


def choice_box(limit: Limit, current: str, source: Path) -> QComboBox:
    """A field IT allows only some values of: just those, the one in force chosen; shown
    but not changeable when IT allows only one."""
    box = QComboBox()
    box.addItems(list(limit.choices))
    box.setCurrentText(current)  # bounded settings: always one of the choices
    box.setEnabled(not limit.fixed)
    box.setToolTip(policy_tooltip(limit, source))
    return box
