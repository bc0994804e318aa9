"""The list of chats beside the transcript: grouped by when they were last used (Today,
Yesterday, Previous 7 days, then by month), with a search field that finds words in
every chat and shows where."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QVBoxLayout,
    QWidget,
)

from app.core.history import Chat, SearchHit

CHAT_ID = Qt.ItemDataRole.UserRole
MESSAGE_ID = Qt.ItemDataRole.UserRole + 1
SEARCH_DELAY_MS = 250  # search once the user pauses typing, not at every key


def date_group(updated_at: float, today: dt.date) -> str:
    """The heading a chat last used at `updated_at` goes under, seen on `today`."""
    day = dt.datetime.fromtimestamp(updated_at).date()
    age = (today - day).days
    if age <= 0:
        return "Today"
    if age == 1:
        return "Yesterday"
    if age < 7:
        return "Previous 7 days"
    if (day.year, day.month) == (today.year, today.month):
        return "Earlier this month"
    return day.strftime("%B %Y")


class ChatList(QWidget):
    """Signals:
    chatChosen(int): the user chose a chat.
    hitChosen(int, int): the user chose a search result: its chat and message.
    renameRequested(int), deleteRequested(int), exportRequested(int): for that chat.
    """

    chatChosen = Signal(int)
    hitChosen = Signal(int, int)
    renameRequested = Signal(int)
    deleteRequested = Signal(int)
    exportRequested = Signal(int)

    def __init__(self, search: Callable[[str, Callable[[list[SearchHit]], None]], None],
                 parent: QWidget | None = None) -> None:
        """`search(query, on_done)` looks for `query` off the GUI thread and calls
        `on_done` with the hits."""
        super().__init__(parent)
        self._search = search
        self._chats: list[Chat] = []
        self.current_id: int | None = None
        self.search_field = QLineEdit()
        self.search_field.setPlaceholderText("Search chats")
        self.search_field.setClearButtonEnabled(True)
        self.search_field.textChanged.connect(self._on_query)
        self.items = QListWidget()
        self.items.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.items.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.items.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.items.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.items.customContextMenuRequested.connect(self._menu)
        self.items.currentItemChanged.connect(self._on_current)
        self.items.itemClicked.connect(self._choose)  # the current one too, clicked again
        self.items.itemDoubleClicked.connect(self._on_double_click)
        self._timer = QTimer(self, singleShot=True, interval=SEARCH_DELAY_MS)
        self._timer.timeout.connect(self._run_search)
        self._asked = ""  # the query whose results may still come back
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.search_field)
        layout.addWidget(self.items, 1)

    @property
    def chats(self) -> list[Chat]:
        """The chats as last listed, newest first."""
        return self._chats

    def titles(self) -> list[str]:
        """The chats' titles as shown, in order (headings and search results left out)."""
        return [self.items.item(row).text() for row in range(self.items.count())
                if self.items.item(row).data(CHAT_ID) is not None
                and self.items.item(row).data(MESSAGE_ID) is None]

    def headings(self) -> list[str]:
        """The date headings (or the "nothing found" line) as shown."""
        return [self.items.item(row).text() for row in range(self.items.count())
                if self.items.item(row).data(CHAT_ID) is None]

    @property
    def searching(self) -> bool:
        return bool(self.search_field.text().strip())

    def set_chats(self, chats: list[Chat], today: dt.date | None = None) -> None:
        """Show `chats` (newest first) under their date headings, unless a search is
        shown."""
        self._chats = chats
        if not self.searching:
            self._show_chats(today or dt.date.today())

    def select(self, chat_id: int | None) -> None:
        """Mark `chat_id` as the open chat, without saying so (it is not the user's
        choice)."""
        self.current_id = chat_id
        self.items.blockSignals(True)
        self.items.setCurrentRow(-1)
        for row in range(self.items.count()):
            item = self.items.item(row)
            if chat_id is not None and item.data(CHAT_ID) == chat_id \
                    and item.data(MESSAGE_ID) is None:
                self.items.setCurrentItem(item)
                break
        self.items.blockSignals(False)

    def chat_at(self, row: int) -> int | None:
        item = self.items.item(row)
        return None if item is None else item.data(CHAT_ID)

    def _show_chats(self, today: dt.date) -> None:
        self.items.blockSignals(True)
        self.items.clear()
        heading = None
        for chat in self._chats:
            group = date_group(chat.updated_at, today)
            if group != heading:
                heading = group
                self.items.addItem(_heading(group))
            item = QListWidgetItem(chat.title)
            item.setData(CHAT_ID, chat.id)
            item.setToolTip(chat.title)
            self.items.addItem(item)
        self.items.blockSignals(False)
        self.select(self.current_id)

    def _on_query(self, text: str) -> None:
        if text.strip():
            self._timer.start()
        else:
            self._timer.stop()
            self._asked = ""
            self._show_chats(dt.date.today())

    def _run_search(self) -> None:
        query = self.search_field.text().strip()
        self._asked = query
        self._search(query, lambda hits: self._show_hits(query, hits))

    def _show_hits(self, query: str, hits: list[SearchHit]) -> None:
        if query != self._asked:
            return  # the user typed on; a newer search is coming
        self.items.blockSignals(True)
        self.items.clear()
        if not hits:
            self.items.addItem(_heading(f"Nothing found for “{query}”"))
        for hit in hits:
            snippet = " ".join(hit.snippet.split())
            item = QListWidgetItem(f"{hit.chat_title}\n{snippet}")
            item.setData(CHAT_ID, hit.chat_id)
            item.setData(MESSAGE_ID, hit.message_id)
            item.setToolTip(snippet)
            self.items.addItem(item)
        self.items.setCurrentRow(-1)  # none chosen yet: choosing any one opens it
        self.items.blockSignals(False)

    def _on_current(self, item: QListWidgetItem | None, _previous: object) -> None:
        self._choose(item)

    def _choose(self, item: QListWidgetItem | None) -> None:
        if item is None or item.data(CHAT_ID) is None:
            return
        if item.data(MESSAGE_ID) is not None:
            self.hitChosen.emit(int(item.data(CHAT_ID)), int(item.data(MESSAGE_ID)))
        else:
            self.current_id = int(item.data(CHAT_ID))
            self.chatChosen.emit(self.current_id)

    def _on_double_click(self, item: QListWidgetItem) -> None:
        if item.data(CHAT_ID) is not None and item.data(MESSAGE_ID) is None:
            self.renameRequested.emit(int(item.data(CHAT_ID)))

    def _menu(self, pos: QPoint) -> None:
        item = self.items.itemAt(pos)
        if item is None or item.data(CHAT_ID) is None:
            return
        chat_id = int(item.data(CHAT_ID))
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self.renameRequested.emit(chat_id))
        menu.addAction("Export as Markdown…", lambda: self.exportRequested.emit(chat_id))
        menu.addAction("Delete…", lambda: self.deleteRequested.emit(chat_id))
        menu.exec(self.items.viewport().mapToGlobal(pos))
        menu.deleteLater()  # else one more kept at every right-click


def _heading(text: str) -> QListWidgetItem:
    item = QListWidgetItem(text)
    item.setFlags(Qt.ItemFlag.NoItemFlags)  # not a chat: can't be chosen
    font = QFont(item.font())
    font.setBold(True)
    font.setPointSizeF(max(6.0, font.pointSizeF() * 0.9))
    item.setFont(font)
    return item
