"""Presets: saved instructions ("Answer formally, in British English") that a chat's
answers follow. A picker beside the composer chooses the open chat's; "Manage…" opens a
small editor of the saved ones."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.history import Chat, Preset
from app.ui.chat_controller import ChatController

NONE = "No instructions"
MANAGE = "Manage instructions…"


class PresetPicker(QComboBox):
    """The open chat's preset. Choosing one applies to the chat's next answers.

    Signals:
        chosen(object): the chat's preset changed (a Preset, or None).
    """

    chosen = Signal(object)

    def __init__(self, controller: ChatController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.chat_id: int | None = None
        self._presets: list[Preset] = []
        self._current = ""  # the open chat's preset name ("" for none)
        self.setToolTip("Instructions this chat's answers follow (a saved preset)")
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(10)
        self.activated.connect(self._on_activated)
        self.dialog: PresetDialog | None = None
        self._fill()
        self.reload()

    def reload(self) -> None:
        """Read the saved presets again (off the GUI thread)."""
        self.controller.call(self.controller.workspace.presets, on_done=self._on_presets)

    def set_chat(self, chat_id: int | None) -> None:
        """Show the preset of the chat now open."""
        self.chat_id = chat_id
        self.setEnabled(chat_id is not None)
        if chat_id is None:
            self._current = ""
            self._fill()
            return
        self.controller.call(self.controller.workspace.chat, chat_id,
                             on_done=self._on_chat)

    def _on_chat(self, chat: Chat | None) -> None:
        if chat is not None and chat.id == self.chat_id:
            self._current = chat.preset
            self._fill()

    def _on_presets(self, presets: list[Preset]) -> None:
        self._presets = presets
        self._fill()

    def _fill(self) -> None:
        self.blockSignals(True)
        self.clear()
        self.addItem(NONE)
        names = [p.name for p in self._presets]
        if self._current and self._current not in names:
            names.append(self._current)  # deleted since; the chat still follows its copy
        for name in names:
            self.addItem(name)
        self.insertSeparator(self.count())
        self.addItem(MANAGE)
        self.setCurrentIndex(self.findText(self._current) if self._current else 0)
        self.blockSignals(False)

    def _on_activated(self, index: int) -> None:
        text = self.itemText(index)
        if text == MANAGE:
            self._fill()  # the chat keeps its preset
            self.manage()
            return
        if self.chat_id is None:
            return
        preset = next((p for p in self._presets if p.name == text), None)
        if text != NONE and preset is None:
            return  # the deleted one it already follows
        chat_id = self.chat_id
        self._current = preset.name if preset else ""
        self.controller.call(self.controller.workspace.set_chat_preset, chat_id, preset,
                             on_done=lambda _chat: self.chosen.emit(preset))

    def manage(self) -> None:
        """Open the editor of saved presets."""
        if self.dialog is None:
            self.dialog = PresetDialog(self.controller, self.window())
            self.dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            self.dialog.changed.connect(self.reload)
            self.dialog.destroyed.connect(lambda: setattr(self, "dialog", None))
        self.dialog.show()
        self.dialog.raise_()


class PresetDialog(QDialog):
    """Add, change and delete saved presets. A chat that follows one keeps the words it
    was given when it was chosen.

    Signals:
        changed(): a preset was saved or deleted.
    """

    changed = Signal()

    def __init__(self, controller: ChatController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle("Instructions (presets)")
        self.resize(560, 380)
        self.names = QListWidget()
        self.names.currentTextChanged.connect(self._show)
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. Formal British English")
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("What every answer in a chat with this preset "
                                       "should follow, e.g. “Answer formally, in British "
                                       "English, in at most three paragraphs.”")
        self.save_button = QPushButton("Save")
        self.save_button.clicked.connect(self.save)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete)
        new_button = QPushButton("New")
        new_button.clicked.connect(self.new)
        form = QFormLayout()
        form.addRow("Name:", self.name)
        form.addRow("Instructions:", self.prompt)
        row = QHBoxLayout()
        row.addWidget(new_button)
        row.addStretch(1)
        row.addWidget(self.delete_button)
        row.addWidget(self.save_button)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        edit = QVBoxLayout()
        edit.addLayout(form)
        edit.addLayout(row)
        body = QHBoxLayout()
        body.addWidget(self.names, 1)
        body.addLayout(edit, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(body)
        layout.addWidget(close)
        self._presets: dict[str, Preset] = {}
        self.reload()

    def reload(self) -> None:
        self.controller.call(self.controller.workspace.presets, on_done=self._on_presets)

    def _on_presets(self, presets: list[Preset]) -> None:
        self._presets = {p.name: p for p in presets}
        current = self.name.text().strip()
        self.names.blockSignals(True)
        self.names.clear()
        self.names.addItems(list(self._presets))
        self.names.blockSignals(False)
        matches = self.names.findItems(current, Qt.MatchFlag.MatchExactly)
        if matches:
            self.names.setCurrentItem(matches[0])

    def new(self) -> None:
        self.names.setCurrentRow(-1)
        self._show("")
        self.name.setFocus()

    def _saved(self, _: object = None) -> None:
        self.reload()
        self.changed.emit()

    def _show(self, name: str) -> None:
        preset = self._presets.get(name)
        self.name.setText(preset.name if preset else "")
        self.prompt.setPlainText(preset.prompt if preset else "")
        self.delete_button.setEnabled(preset is not None)

    def save(self) -> None:
        name, prompt = self.name.text().strip(), self.prompt.toPlainText().strip()
        if not name or not prompt:
            self.name.setFocus() if not name else self.prompt.setFocus()
            return
        self.controller.call(self.controller.workspace.save_preset, name, prompt,
                             on_done=self._saved)

    def delete(self) -> None:
        name = self.name.text().strip()
        if name in self._presets:
            self._show("")
            self.controller.call(self.controller.workspace.delete_preset, name,
                                 on_done=self._saved)
