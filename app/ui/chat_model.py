"""The messages of the chat on screen, as a Qt list model that a streamed answer grows one row at a
time."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any, Final

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from app.core.history import Message, MessageStatus

ModelIndex = QModelIndex | QPersistentModelIndex

# One counter for the whole process, so that a (message id, version) pair names one content even
# across set_messages() resets.
_versions = itertools.count(1)


class ChatModel(QAbstractListModel):
    """The messages of one chat, oldest first.

    Every change gives the row a new content version (VersionRole), unique for the life of the
    process, which the delegate uses to key its caches.

    Signals:
        None of its own. append_message() emits rowsInserted; set_messages() and clear() emit
        modelReset; append_text() and finish_message() emit dataChanged for the one row changed.
    """

    MessageRole: Final = int(Qt.ItemDataRole.UserRole) + 1
    VersionRole: Final = int(Qt.ItemDataRole.UserRole) + 2

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._messages: list[Message] = []
        self._versions: list[int] = []
        self._rows: dict[int, int] = {}  # message id -> row
        # A plan's steps show one line each; these were opened (or, streaming, closed).
        self._opened: set[int] = set()
        self._closed: set[int] = set()

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008 (Qt signature)
        return 0 if parent.isValid() else len(self._messages)

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._messages):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self._messages[index.row()].content
        if role == self.MessageRole:
            return self._messages[index.row()]
        if role == self.VersionRole:
            return self._versions[index.row()]
        return None

    def shown_at(self, row: int) -> Message:
        """The message in `row` as it is drawn: a step of a plan as one line ("▸ Step:
        …") until opened; open (or while it streams) its line, then what it wrote."""
        message = self.message_at(row)
        if message.kind != "step":
            return message
        if self.is_open(message):
            return replace(message, content=f"▾ {message.title}\n\n{message.content}")
        return replace(message, content=f"▸ {message.title}")

    def is_open(self, message: Message) -> bool:
        return message.id in self._opened or (message.status == "streaming"
                                               and message.id not in self._closed)

    def toggle(self, message_id: int) -> None:
        """Open a step of a plan, or close it."""
        row = self._row_or_raise(message_id)
        message = self._messages[row]
        if self.is_open(message):
            self._opened.discard(message_id)
            self._closed.add(message_id)
        else:
            self._closed.discard(message_id)
            self._opened.add(message_id)
        self._set_row(row, message)

    def message_at(self, row: int) -> Message:
        """The message in `row`; IndexError if there is none (negative rows included)."""
        if not 0 <= row < len(self._messages):
            raise IndexError(f"no message in row {row}")
        return self._messages[row]

    def version_at(self, row: int) -> int:
        """The content version of `row`: it changes whenever that message changes."""
        return self._versions[row]

    def row_of(self, message_id: int) -> int | None:
        """The row that shows the message with this id, or None."""
        return self._rows.get(message_id)

    def set_messages(self, messages: list[Message]) -> None:
        """Show these messages instead of the current ones (a model reset)."""
        rows = {m.id: row for row, m in enumerate(messages)}
        if len(rows) != len(messages):
            raise ValueError("message ids must be unique within a chat")
        self.beginResetModel()
        self._messages = list(messages)
        self._versions = [next(_versions) for _ in messages]
        self._rows = rows
        self.endResetModel()

    def append_message(self, message: Message) -> None:
        """Add a message at the end, e.g. the user's prompt or an answer that starts streaming."""
        if message.id in self._rows:
            raise ValueError(f"message {message.id} is already in this chat")
        row = len(self._messages)
        self.beginInsertRows(QModelIndex(), row, row)
        self._messages.append(message)
        self._versions.append(next(_versions))
        self._rows[message.id] = row
        self.endInsertRows()

    def append_text(self, message_id: int, text: str) -> None:
        """Append streamed text to a message; KeyError if this chat has no such message."""
        if text:
            row = self._row_or_raise(message_id)
            old = self._messages[row]
            self._set_row(row, replace(old, content=old.content + text))

    def finish_message(
        self, message_id: int, *, content: str | None = None, status: MessageStatus, error: str = ""
    ) -> None:
        """End a streamed message with its final status (and final text, if the caller has it)."""
        row = self._row_or_raise(message_id)
        old = self._messages[row]
        content = old.content if content is None else content
        self._set_row(row, replace(old, content=content, status=status, error=error))

    def remove_message(self, message_id: int) -> None:
        """Take a message out (a plan's step that is run again)."""
        row = self._row_or_raise(message_id)
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._messages[row]
        del self._versions[row]
        self._rows = {m.id: r for r, m in enumerate(self._messages)}
        self.endRemoveRows()

    def replace_message(self, message: Message) -> None:
        """Show a message as saved (an answer that ended, with its footer)."""
        self._set_row(self._row_or_raise(message.id), message)

    def clear(self) -> None:
        """Show no messages."""
        self.set_messages([])

    def _row_or_raise(self, message_id: int) -> int:
        row = self._rows.get(message_id)
        if row is None:
            raise KeyError(f"message {message_id} is not in this chat")
        return row

    def _set_row(self, row: int, message: Message) -> None:
        self._messages[row] = message
        self._versions[row] = next(_versions)
        index = self.index(row, 0)
        self.dataChanged.emit(
            index, index, [int(Qt.ItemDataRole.DisplayRole), self.MessageRole, self.VersionRole]
        )
