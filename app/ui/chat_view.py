"""The chat transcript: a list view of one chat's messages, painted as Markdown bubbles, that
follows a streaming answer while the user is at the bottom and stays put while they read above."""

from __future__ import annotations

from functools import partial
from typing import Any, Final

from PySide6.QtCore import QEvent, QModelIndex, QPoint, Qt, Signal
from PySide6.QtGui import QContextMenuEvent, QGuiApplication, QMouseEvent, QResizeEvent
from PySide6.QtWidgets import QAbstractItemView, QListView, QMenu, QWidget

from app.ui.chat_bubble import message_actions
from app.ui.chat_delegate import ChatDelegate
from app.ui.chat_model import ChatModel, ModelIndex

__all__ = ["ChatDelegate", "ChatModel", "ChatView"]


class ChatView(QListView):
    """The transcript of one chat: a QListView over a ChatModel, painted by a ChatDelegate.

    It follows a streaming answer down only while the user is at the bottom; a user who has
    scrolled up to read stays where they are, even while rows above change height.

    Signals:
        codeCopied(str): the text of a code block copied with its Copy button.
        linkActivated(str): a link in a message was clicked; the view does not open it.
        messageCopied(int): the id of a message copied with "Copy message".
        actionRequested(str, int): "edit", "regenerate", "continue" or "retry-plan" for the
            message of that id, from under its bubble or its context menu.
    """

    codeCopied = Signal(str)
    linkActivated = Signal(str)
    messageCopied = Signal(int)
    actionRequested = Signal(str, int)

    BOTTOM_SLACK: Final = 4  # pixels from the end that still count as "at the bottom"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # First: the setters below already lay out and scroll (updateGeometries).
        self._at_bottom = True
        self._anchor: tuple[int, int] | None = None  # (message id, its top in the viewport)
        self._adjusting = 0  # > 0 while the view itself moves the scroll bar (it nests)
        self._model = ChatModel(self)
        self._delegate = ChatDelegate(self, self._model)
        self.setModel(self._model)
        self.setItemDelegate(self._delegate)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.verticalScrollBar().setSingleStep(24)  # per-pixel scrolling's default step crawls
        # Word wrap also makes QListView re-lay out its rows when only the width changes.
        self.setWordWrap(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        # One pass, not Batched: between batches QListView paints with only part of the rows
        # placed and clamps the scroll position to them, so the end of a streaming chat
        # flickered on every new line. A pass over cached heights is cheap, and layout_pass()
        # needs the whole pass inside doItemsLayout().
        self.setLayoutMode(QListView.LayoutMode.SinglePass)
        self.setMouseTracking(True)  # a hand cursor over Copy buttons and links

        self._delegate.codeCopied.connect(self.codeCopied)
        self._delegate.linkActivated.connect(self.linkActivated)
        self._delegate.actionRequested.connect(self.actionRequested)
        self._model.modelReset.connect(self._on_reset)
        self.verticalScrollBar().valueChanged.connect(self._on_scrolled)

    @property
    def chat_model(self) -> ChatModel:
        return self._model

    @property
    def chat_delegate(self) -> ChatDelegate:
        return self._delegate

    def is_at_bottom(self) -> bool:
        """Whether the view follows the end of the chat (where streamed text arrives)."""
        return self._at_bottom

    def scrollToBottom(self) -> None:
        """Show the end of the chat and follow it again, e.g. after the user sends a prompt."""
        self._at_bottom = True
        super().scrollToBottom()

    def context_menu_for(self, index: QModelIndex) -> QMenu:
        """The context menu for a message; the caller shows it (tests trigger its actions)."""
        menu = QMenu(self)
        message = self._model.message_at(index.row())
        menu.addAction("Copy message", lambda: self._copy_message(message.id))
        for action, label in message_actions(message):
            words = "Edit and send again" if action == "edit" else label
            menu.addAction(words, partial(self.actionRequested.emit, action, message.id))
        return menu

    def _copy_message(self, message_id: int) -> None:
        # Its text when the action is taken: a streaming answer may have grown since.
        row = self._model.row_of(message_id)
        if row is not None:
            QGuiApplication.clipboard().setText(self._model.message_at(row).content)
            self.messageCopied.emit(message_id)

    # -- Qt overrides --------------------------------------------------------------------------

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        index = self.indexAt(event.pos())
        if index.isValid():
            menu = self.context_menu_for(index)
            menu.exec(event.globalPos())
            menu.deleteLater()

    def resizeEvent(self, event: QResizeEvent) -> None:
        # Before the re-layout: the rows on screen now are the ones worth measuring exactly.
        self._update_focus()
        super().resizeEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        super().mouseMoveEvent(event)
        pos = event.position().toPoint()
        index = self.indexAt(pos)
        if index.isValid() and self._delegate.clickable_at(index, pos):
            self.viewport().setCursor(Qt.CursorShape.PointingHandCursor)
        else:
            self.viewport().unsetCursor()

    def doItemsLayout(self) -> None:
        # Tell the delegate which sizes are the ones the rows get placed with.
        self._delegate.layout_pass(True)
        try:
            super().doItemsLayout()
        finally:
            self._delegate.layout_pass(False)

    def dataChanged(self, top_left: ModelIndex, bottom_right: ModelIndex, roles: Any = ()) -> None:
        # QListView answers every dataChanged by re-laying out all rows (QListModeViewBase): for
        # every streamed chunk, at thousands of rows. Skip it: the delegate measures the changed
        # row and asks for a re-layout only if its height changed.
        QAbstractItemView.dataChanged(self, top_left, bottom_right, list(roles))
        for row in range(top_left.row(), bottom_right.row() + 1):
            self._delegate.message_changed(row)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self._delegate.drop_documents()  # code shading is baked into the documents
            self.viewport().update()
        elif event.type() == QEvent.Type.FontChange:
            self._delegate.reset_caches()
            self.scheduleDelayedItemsLayout()
        super().changeEvent(event)

    def updateGeometries(self) -> None:
        # Runs after every layout pass (and resize), once the rows are in their new places.
        super().updateGeometries()
        bar = self.verticalScrollBar()
        if self._at_bottom:
            if bar.value() != bar.maximum():
                self._set_scroll(bar.maximum())
            return
        # Rows above the screen got their exact height: keep the row being read in place.
        if self._anchor is None:
            return
        message_id, top = self._anchor
        row = self._model.row_of(message_id)
        rect = self.visualRect(self._model.index(row, 0)) if row is not None else None
        if rect is not None and rect.isValid() and rect.top() != top:
            self._set_scroll(bar.value() + rect.top() - top)

    # -- scrolling -----------------------------------------------------------------------------

    def _set_scroll(self, value: int) -> None:
        # setValue() can run a pending layout (QListView lays out before it scrolls), whose
        # updateGeometries() scrolls again, inside this call.
        self._adjusting += 1
        try:
            self.verticalScrollBar().setValue(value)
        finally:
            self._adjusting -= 1
        self._remember_anchor()

    def _on_scrolled(self, _value: int) -> None:
        if self._adjusting:
            return  # the view moved it, not the user
        bar = self.verticalScrollBar()
        # The current value, not the signal's: a nested scroll may already have replaced it.
        self._at_bottom = bar.value() >= bar.maximum() - self.BOTTOM_SLACK
        self._remember_anchor()
        self._update_focus()

    def _remember_anchor(self) -> None:
        index = self.indexAt(QPoint(self.viewport().width() // 2, 0))
        self._anchor = None
        if index.isValid():
            self._anchor = (self._model.message_at(index.row()).id, self.visualRect(index).top())

    def _update_focus(self) -> None:
        rows = self._model.rowCount()
        viewport = self.viewport().rect()
        top = self.indexAt(QPoint(viewport.width() // 2, 0))
        bottom = self.indexAt(QPoint(viewport.width() // 2, viewport.height() - 1))
        first = top.row() if top.isValid() else rows - 1
        last = bottom.row() if bottom.isValid() else rows - 1
        self._delegate.set_focus_rows(range(max(0, first - 5), min(rows, last + 6)))

    def _on_reset(self) -> None:
        self._delegate.reset_caches()
        self._at_bottom = True
        self._anchor = None
